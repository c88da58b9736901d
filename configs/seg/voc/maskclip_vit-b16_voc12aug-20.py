# MaskCLIP zero-shot (training-free) on PASCAL VOC 2012 val WITHOUT background with CLIP ViT-B/16:
# the protocol of the official 49.5 mIoU (chongzhou96/MaskCLIP@245d31f
# configs/maskclip/maskclip_vit16_512x512_voc12aug_20.py): PascalVOCDataset20 (20 classes,
# background pixels ignored), whole-image inference at short side 512 (Resize (2048, 512), keep
# ratio), MaskCLIP's 85 prompt templates, key smoothing and prompt denoising OFF (MaskClipHead
# ks_thresh = pd_thresh = 0).
# Key smoothing + prompt denoising: voc/maskclip_vit-b16_voc12aug-20_kspd.py.
# Remaining deviation: the image is resized to the nearest multiple of the patch size (16); the
# official ViT zero-pads bottom/right to the next multiple and resizes the padded grid's logits to
# the image.
# Evaluate: python tools/test_seg.py configs/seg/voc/maskclip_vit-b16_voc12aug-20.py   (no
# checkpoint)
_base_ = [
    "../_base_/default_runtime.py",
    "../_base_/datasets/voc12aug20_ov.py",
    "../_base_/models/clip_vit-b16_teacher.py",
]

model = dict(
    type="MaskCLIPSegmentor",
    teacher={{_base_.teacher}},
    class_names={{_base_.voc_text_names}},
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
