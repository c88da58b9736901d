# MaskCLIP zero-shot (training-free, annotation-free protocol) on COCO-Stuff 164k (171 classes) with
# CLIP ViT-B/16, the official protocol of its 12.5 mIoU (chongzhou96/MaskCLIP@245d31f
# configs/maskclip/maskclip_vit16_512x512_coco-stuff164k.py): whole-image inference at short side
# 512 (Resize (2048, 512), keep ratio), key smoothing and prompt denoising OFF.
# Key smoothing + prompt denoising: --cfg-options model.key_smoothing=1.0 model.prompt_denoise=0.5
# Remaining deviation: images are resized to a multiple of 16 (official: zero-padded, logits
# resized).
_base_ = [
    "../_base_/default_runtime.py",
    "../_base_/datasets/coco_stuff164k_ov.py",
    "../_base_/models/clip_vit-b16_teacher.py",
]

model = dict(
    type="MaskCLIPSegmentor",
    teacher={{_base_.teacher}},
    class_names={{_base_.coco_stuff_text_names}},
    templates={{_base_.text_templates}},
    key_smoothing=None,
    prompt_denoise=None,
    data_preprocessor=dict(
        type="SegDataPreProcessor", mean=None, std=None, bgr_to_rgb=True, pad_val=0, seg_pad_val=255
    ),
    test_cfg=dict(mode="whole"),
)
train_dataloader = None
val_dataloader = None
val_evaluator = None
test_cfg = dict(type="TestLoop")
