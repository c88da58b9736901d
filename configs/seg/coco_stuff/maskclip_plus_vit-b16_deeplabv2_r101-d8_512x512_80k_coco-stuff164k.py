# MaskCLIP+ (transductive zero-shot) on COCO-Stuff 164k: DeepLabV2 R101-d8 student, ViT-B/16 teacher, 80k iterations,
# self-training from 8k. Crop 512. Paper: unseen mIoU 54.7.
_base_ = [
    "../_base_/default_runtime.py",
    "../_base_/datasets/coco_stuff164k_ov.py",
    "../_base_/models/clip_vit-b16_teacher.py",
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
