# MaskCLIP on PASCAL VOC 2012 w/o background (voc/maskclip_vit-b16_voc12aug-20.py) WITH key
# smoothing (ks_thresh 1.0) and prompt denoising (pd_thresh 0.5), the refinements the official
# configs leave commented out (chongzhou96/MaskCLIP@245d31f
# configs/maskclip/maskclip_r50_512x512_voc12aug_20.py).
# Keys are normalized over the locations, as the official F.normalize(k) on [N, HW, C] does.
_base_ = ["./maskclip_vit-b16_voc12aug-20.py"]

model = dict(key_smoothing=1.0, prompt_denoise=0.5, key_norm="spatial")
