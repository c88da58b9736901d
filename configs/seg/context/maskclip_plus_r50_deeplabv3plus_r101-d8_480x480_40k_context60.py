# MaskCLIP+ (transductive zero-shot) on PASCAL Context-60 (official README 48.4*;
# chongzhou96/MaskCLIP@245d31f
# configs/maskclip_plus/zero_shot/maskclip_plus_r50_deeplabv3plus_r101-d8_480x480_40k_pascal_context.py):
# DeepLabV3+ R101-d8 student with a learned background embedding (label 0, seen), RN50 teacher, 40k
# iterations, self-training from 4k, crop 480, SGD lr 0.004, weight decay 1e-4 (the official
# config's last line), poly. Paper (ViT-B/16 teacher): unseen mIoU 66.7.
_base_ = [
    "../_base_/default_runtime.py",
    "../_base_/datasets/context60_ov.py",
    "../_base_/models/clip_rn50_teacher.py",
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
optimizer = dict(type="SGD", lr=0.004, momentum=0.9, weight_decay=0.0001)
optim_wrapper = dict(optimizer=optimizer)
