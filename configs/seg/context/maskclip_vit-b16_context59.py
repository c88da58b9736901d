# MaskCLIP zero-shot (training-free, annotation-free protocol) on PASCAL Context-59 with CLIP
# ViT-B/16, the official protocol of its 21.7 mIoU (chongzhou96/MaskCLIP@245d31f
# configs/maskclip/maskclip_vit16_520x520_pascal_context_59.py):
# whole-image inference on the image resized to fit 520x520 (Resize (520, 520), keep ratio), key
# smoothing and prompt denoising OFF (its ks_thresh / pd_thresh lines are commented out).
# Key smoothing + prompt denoising: --cfg-options model.key_smoothing=1.0 model.prompt_denoise=0.5
# Remaining deviation: images are resized to a multiple of 16 (official: zero-padded, logits
# resized).
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
