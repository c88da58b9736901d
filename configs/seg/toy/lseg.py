# LSeg on the toy world (inductive zero-shot): a tiny ResNet-18 (16 base channels) + LSeg head
# scoring per-pixel embeddings against fixed text embeddings, logits = (1/0.07) pixel . text;
# trained on the seen label set only (unseen classes are masked out of the softmax and their pixels
# ignored), evaluated on all 13 classes. Text embeddings: the toy teacher's text encoder on the raw
# label names, no prompt template (LSeg: clip.tokenize(self.labels)).
_base_ = [
    "../_base_/default_runtime.py",
    "../_base_/datasets/toy_world.py",
    "../_base_/models/toy_teacher.py",
    "../_base_/schedules/toy_1500it.py",
]
text_templates = ["{}"]  # raw label names (overrides the toy teacher's "simple")

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
    type="EncoderDecoder",
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type="ResNetV1c",
        depth=18,
        stem_channels=16,
        base_channels=16,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        strides=(1, 2, 2, 2),
        dilations=(1, 1, 1, 1),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style="pytorch",
    ),
    decode_head=dict(
        type="LSegHead",
        in_channels=[16, 32, 64, 128],
        in_index=[0, 1, 2, 3],
        input_transform="multiple_select",
        channels=32,
        num_convs=2,
        text_embeddings="<work_dir>/text_embeddings.pt",
        class_names={{_base_.class_names}},
        logits="cosine",
        temperature=0.07,
        train_excluded_classes={{_base_.unseen_ids}},
        dropout_ratio=0.1,
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
