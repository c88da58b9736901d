# LSeg (inductive zero-shot) on PASCAL VOC: ResNet-101 + LSeg head, fixed text embeddings of all 21
# classes from the CLIP ViT-B/32 text encoder on the raw label names (no prompt templates), as
# isl-org/lang-seg@bb00b21 modules/models/lseg_net.py; the 5 unseen classes are left out of the
# training label set and scored only at test time.
# Deviations: the official image encoder is a DPT ViT-L/16 (CLIP-initialized), here an MMSeg
# ResNet-101 with LSegHead; LSeg's own zero-shot protocol is the few-shot PASCAL-5i binary setting
# (lseg_net_zs.py), here the MaskCLIP+ VOC split.
_base_ = [
    "../_base_/default_runtime.py",
    "../_base_/datasets/voc12aug_ov.py",
    "../_base_/models/clip_vit-b32_text_raw_names.py",
    "../_base_/models/lseg_r101.py",
    "../_base_/schedules/schedule_20k.py",
]

model = dict(
    data_preprocessor=dict(size=(512, 512)),
    decode_head=dict(
        num_classes=21,
        class_names={{_base_.voc_text_names}},
        train_excluded_classes={{_base_.unseen_ids}},
    ),
)
# LSeg recipe: SGD lr 0.004 x batch/16 (decoder 10x), wd 1e-4 (the schedule file's SGD is replaced).
optim_wrapper = dict(
    _delete_=True,
    type="OptimWrapper",
    optimizer=dict(type="SGD", lr=0.004, momentum=0.9, weight_decay=1e-4),
    paramwise_cfg=dict(custom_keys={"decode_head": dict(lr_mult=10.0)}),
    clip_grad=None,
)
