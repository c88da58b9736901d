# MaskCLIP+ student: ResNet-101-V1c, output stride 8, DeepLabV2 head as the official
# MaskClipPlusHead + ASPPHeadV2 (chongzhou96/MaskCLIP@245d31f
# configs/_base_/models/maskclip_plus_r50.py): atrous 6/12/18/24 branches of conv + SyncBN + ReLU,
# summed; channels = the text dimension (1024 for the RN50 teacher), logits = the unnormalized dot
# product feat . text (norm_feat=False, no temperature), dropout 0. Concrete configs set teacher,
# class names, unseen ids and the switch iteration.
norm_cfg = dict(type="SyncBN", requires_grad=True)
data_preprocessor = dict(
    type="SegDataPreProcessor",
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
)
model = dict(
    type="MaskCLIPPlusSegmentor",
    data_preprocessor=data_preprocessor,
    pretrained="open-mmlab://resnet101_v1c",
    backbone=dict(
        type="ResNetV1c",
        depth=101,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 2, 4),
        strides=(1, 2, 1, 1),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style="pytorch",
        contract_dilation=True,
    ),
    decode_head=dict(
        type="TextDeepLabV2Head",
        in_channels=2048,
        in_index=3,
        # channels: the text dimension (1024 for RN50), the default of logits='dot'
        dilations=(6, 12, 18, 24),
        text_embeddings="<work_dir>/text_embeddings.pt",
        logits="dot",
        dropout_ratio=0.0,
        norm_cfg=norm_cfg,
        act_cfg=dict(type="ReLU"),
        align_corners=False,
        loss_decode=dict(
            type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True
        ),
    ),
    templates="maskclip",
    confidence_threshold=0.0,
    train_cfg=dict(),
    test_cfg=dict(mode="whole"),
)
