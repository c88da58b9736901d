# MaskCLIP+ on the toy world (transductive): a tiny ResNet-18-d8 (16 base channels) + DeepLabV2
# text-classifier head, trained on ground truth for seen pixels and on the toy teacher's argmax over
# the unseen classes for unseen pixels, then on its own predictions (self-training).
# The official MaskCLIP+ head (as the real configs): branches conv + BN + ReLU (1x1 where the
# dilation is 1), summed, features = pixel embeddings (channels = text dimension), logits =
# unnormalized feat . text, no temperature, no dropout. Dilations are scaled to the 16x16 feature
# map (real configs: 6/12/18/24).
_base_ = [
    "../_base_/default_runtime.py",
    "../_base_/datasets/toy_world.py",
    "../_base_/models/toy_teacher.py",
    "../_base_/schedules/toy_1500it.py",
]

norm_cfg = dict(type="BN", requires_grad=True)
data_preprocessor = dict(
    type="SegDataPreProcessor",
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(128, 128),
)
model = dict(
    type="MaskCLIPPlusSegmentor",
    teacher={{_base_.teacher}},
    teacher_class_names={{_base_.class_names}},
    templates={{_base_.text_templates}},
    unseen_classes={{_base_.unseen_ids}},
    self_training_start=1000,
    confidence_threshold=0.0,
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type="ResNetV1c",
        depth=18,
        stem_channels=16,
        base_channels=16,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        strides=(1, 2, 1, 1),
        dilations=(1, 1, 2, 4),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style="pytorch",
        contract_dilation=True,
    ),
    decode_head=dict(
        type="TextDeepLabV2Head",
        in_channels=128,
        in_index=3,
        # channels: the toy teacher's text dimension (128), the default of logits='dot'
        dilations=(1, 2, 3, 4),
        text_embeddings="<work_dir>/text_embeddings.pt",
        class_names={{_base_.shape_names}},
        learned_background=True,
        logits="dot",
        dropout_ratio=0.0,
        norm_cfg=norm_cfg,
        act_cfg=dict(type="ReLU"),
        align_corners=False,
        loss_decode=dict(
            type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True
        ),
    ),
    train_cfg=dict(),
    test_cfg=dict(mode="whole"),
)
