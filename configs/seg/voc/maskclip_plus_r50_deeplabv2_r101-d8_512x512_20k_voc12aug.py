# MaskCLIP+ (transductive zero-shot) on PASCAL VOC 2012 + aug WITH background (21 classes): the
# official config of that name (chongzhou96/MaskCLIP@245d31f
# configs/maskclip_plus/zero_shot/maskclip_plus_r50_deeplabv2_r101-d8_512x512_20k_voc12aug.py;
# its README reports only the 20-class setting, voc/..._voc12aug-20.py): a learned background
# embedding (cls_bg) as label 0, counted as seen; unseen = labels 16-20; RN50 teacher, DeepLabV2
# R101-d8 student, 20k iterations, self-training from 2k, SGD lr 0.01 wd 5e-4 poly, crop 512.
_base_ = [
    "../_base_/default_runtime.py",
    "../_base_/datasets/voc12aug_ov.py",
    "../_base_/models/clip_rn50_teacher.py",
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
