# MaskCLIP+ (transductive zero-shot) on PASCAL VOC: DeepLabV2 R101-d8 student, ViT-B/16 MaskCLIP teacher,
# 20k iterations with the teacher's pseudo-labels for unseen pixels until 2k, self-training afterwards.
# SGD lr 0.01 wd 5e-4 poly, 4 images/GPU (x4 GPUs), crop 512. Paper: unseen mIoU 86.1.
_base_ = [
    "../_base_/default_runtime.py",
    "../_base_/datasets/voc12aug_ov.py",
    "../_base_/models/clip_vit-b16_teacher.py",
    "../_base_/models/maskclip_plus_deeplabv2_r101-d8.py",
    "../_base_/schedules/schedule_20k.py",
]

model = dict(
    teacher={{_base_.teacher}},
    teacher_class_names={{_base_.voc_text_names}},
    templates={{_base_.text_templates}},
    unseen_classes={{_base_.unseen_ids}},
    self_training_start=2000,
    data_preprocessor=dict(size=(512, 512)),
    decode_head=dict(
        num_classes=21, class_names={{_base_.voc_text_names_fg}}, learned_background=True
    ),
)
