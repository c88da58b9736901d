# MaskCLIP+ student for PASCAL Context: ResNet-101-V1c-d8 + DeepLabV3+ head, as the official
# MaskClipPlusHead with decode_module_cfg=DepthwiseSeparableASPPHead (chongzhou96/MaskCLIP@245d31f
# configs/maskclip_plus/zero_shot/maskclip_plus_r50_deeplabv3plus_r101-d8_480x480_40k_pascal_context.py):
# channels = the text dimension (1024 for RN50), logits = unnormalized feat . text, dropout 0.
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
        type="TextDepthwiseSeparableASPPHead",
        in_channels=2048,
        in_index=3,
        # channels: the text dimension (1024 for RN50), the default of logits='dot'
        dilations=(1, 12, 24, 36),
        c1_in_channels=256,
        c1_channels=48,
        text_embeddings="<work_dir>/text_embeddings.pt",
        logits="dot",
        dropout_ratio=0.0,
        norm_cfg=norm_cfg,
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
