# MaskCLIP+ (transductive zero-shot) on PASCAL Context-60: DeepLabV3+ R101-d8 student with a learned background
# embedding, ViT-B/16 teacher, 40k iterations, self-training from 4k. Crop 480. Paper: unseen mIoU 66.7.
_base_ = [
    "../_base_/default_runtime.py",
    "../_base_/datasets/context60_ov.py",
    "../_base_/models/clip_vit-b16_teacher.py",
    "../_base_/models/maskclip_plus_deeplabv3plus_r101-d8.py",
    "../_base_/schedules/schedule_40k.py",
]

model = dict(
    teacher={{_base_.teacher}},
    teacher_class_names={{_base_.context60_text_names}},
    templates={{_base_.text_templates}},
    unseen_classes={{_base_.unseen_ids}},
    self_training_start=4000,
    data_preprocessor=dict(size=(480, 480)),
    decode_head=dict(
        num_classes=60, class_names={{_base_.context59_text_names}}, learned_background=True
    ),
)
