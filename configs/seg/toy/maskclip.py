# MaskCLIP zero-shot on the toy world: the toy teacher's dense path, no training (tools/test_seg.py, no checkpoint).
_base_ = [
    "../_base_/default_runtime.py",
    "../_base_/datasets/toy_world.py",
    "../_base_/models/toy_teacher.py",
]

data_preprocessor = dict(
    type="SegDataPreProcessor", mean=None, std=None, bgr_to_rgb=True, pad_val=0, seg_pad_val=255
)
model = dict(
    type="MaskCLIPSegmentor",
    teacher={{_base_.teacher}},
    class_names={{_base_.class_names}},
    templates={{_base_.text_templates}},
    key_smoothing=None,
    prompt_denoise=None,
    data_preprocessor=data_preprocessor,
    test_cfg=dict(mode="whole"),
)
train_dataloader = None
test_cfg = dict(type="TestLoop")
val_cfg = None
val_dataloader = None
val_evaluator = None
