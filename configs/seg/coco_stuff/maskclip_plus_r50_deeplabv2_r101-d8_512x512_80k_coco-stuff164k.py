# MaskCLIP+ (transductive zero-shot) on COCO-Stuff 164k (official README 39.7*;
# chongzhou96/MaskCLIP@245d31f
# configs/maskclip_plus/zero_shot/maskclip_plus_r50_deeplabv2_r101-d8_512x512_80k_coco-stuff164k.py):
# DeepLabV2 R101-d8 student, RN50 teacher, 80k iterations, self-training from 8k, crop 512, SGD lr
# 0.01 wd 5e-4 poly. Paper (ViT-B/16 teacher): unseen mIoU 54.7.
_base_ = [
    "../_base_/default_runtime.py",
    "../_base_/datasets/coco_stuff164k_ov.py",
    "../_base_/models/clip_rn50_teacher.py",
    "../_base_/models/maskclip_plus_deeplabv2_r101-d8.py",
    "../_base_/schedules/schedule_80k.py",
]

model = dict(
    teacher={{_base_.teacher}},
    teacher_class_names={{_base_.coco_stuff_text_names}},
    templates={{_base_.text_templates}},
    unseen_classes={{_base_.unseen_ids}},
    self_training_start=8000,
    data_preprocessor=dict(size=(512, 512)),
    decode_head=dict(num_classes=171, class_names={{_base_.coco_stuff_text_names}}),
)
