# MaskCLIP+ (transductive zero-shot) on PASCAL VOC 2012 + aug WITHOUT background, the setting of the
# official README row (87.8 unseen mIoU; chongzhou96/MaskCLIP@245d31f
# configs/maskclip_plus/zero_shot/maskclip_plus_r50_deeplabv2_r101-d8_512x512_20k_voc12aug_20.py):
# PascalVOCDataset20 (20 classes, background ignored in training and evaluation), unseen = labels
# 15-19; DeepLabV2 R101-d8 student (ASPPHeadV2: conv + SyncBN + ReLU, unnormalized feat . text),
# RN50 MaskCLIP teacher (no key smoothing / prompt denoising) labels the unseen pixels until 2k
# iterations, self-training afterwards; 20k iterations, SGD lr 0.01 wd 5e-4 poly, 4 images/GPU (x4
# GPUs), crop 512.
# Remaining deviation: the switch happens one iteration later (official: teacher iterations 1-1999,
# self-training from 2000).
_base_ = [
    "../_base_/default_runtime.py",
    "../_base_/datasets/voc12aug20_ov.py",
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
    decode_head=dict(num_classes=20, class_names={{_base_.voc_text_names}}),
)
