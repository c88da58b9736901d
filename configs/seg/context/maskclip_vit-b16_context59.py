# MaskCLIP zero-shot (training-free, annotation-free protocol) on PASCAL Context-59 with CLIP ViT-B/16.
_base_ = [
    "../_base_/default_runtime.py",
    "../_base_/datasets/context59_ov.py",
    "../_base_/models/clip_vit-b16_teacher.py",
]

model = dict(
    type="MaskCLIPSegmentor",
    teacher={{_base_.teacher}},
    class_names={{_base_.context59_text_names}},
    templates={{_base_.text_templates}},
    key_smoothing=1.0,
    prompt_denoise=0.5,
    data_preprocessor=dict(
        type="SegDataPreProcessor", mean=None, std=None, bgr_to_rgb=True, pad_val=0, seg_pad_val=255
    ),
    test_cfg=dict(mode="slide", crop_size=(448, 448), stride=(224, 224)),
)
train_dataloader = None
val_dataloader = None
val_evaluator = None
test_cfg = dict(type="TestLoop")
