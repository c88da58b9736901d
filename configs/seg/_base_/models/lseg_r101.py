# LSeg with an MMSeg backbone: ResNet-101-V1c (all four levels) + LSegHead (per-pixel 512-d
# embeddings, logits = (1/0.07) normalize(pixel) . text, fixed text embeddings of the teacher's text
# encoder).
# No dropout: lang-seg@bb00b21 parses --dropout 0.1 but its network never uses it.
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
    type="EncoderDecoder",
    data_preprocessor=data_preprocessor,
    pretrained="open-mmlab://resnet101_v1c",
    backbone=dict(
        type="ResNetV1c",
        depth=101,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 1, 1),
        strides=(1, 2, 2, 2),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style="pytorch",
    ),
    decode_head=dict(
        type="LSegHead",
        in_channels=[256, 512, 1024, 2048],
        in_index=[0, 1, 2, 3],
        input_transform="multiple_select",
        channels=256,
        num_convs=2,
        text_embeddings="<work_dir>/text_embeddings.pt",
        logits="cosine",
        temperature=0.07,
        dropout_ratio=0.0,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True
        ),
    ),
    train_cfg=dict(),
    test_cfg=dict(mode="whole"),
)
