# CLIP-ES student on the toy world: a standard EncoderDecoder (tiny ResNet-18-d8 + DeepLabV2 head, random init)
# trained on CLIP-ES pseudo-masks from image-level labels; low-confidence pixels are 255 in the masks, so the
# cross-entropy ignores them (the confidence-guided loss). Validation on the toy world's ground-truth val split.
#
#   python tools/make_pseudo_masks.py --toy --split train --out work_dirs/clip_es/pseudo_masks
#   python tools/train_seg.py configs/seg/toy/clip_es.py            # work_dir defaults to work_dirs/clip_es
#
# tools/clip_es_toy_table.py runs both steps (and the pseudo-mask evaluation) in one go.
_base_ = [
    "../_base_/default_runtime.py",
    "../_base_/datasets/toy_world.py",
    "../_base_/schedules/toy_1500it.py",
]

toy_world = True
custom_imports = dict(imports=["segmentors", "segmentors.clip_es"], allow_failed_imports=False)
pseudo_masks = "<work_dir>/pseudo_masks"  # output of tools/make_pseudo_masks.py

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
        stem_channels=32,
        base_channels=32,
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
        type="DeepLabV2Head",
        in_channels=256,
        in_index=3,
        channels=128,
        dilations=(1, 2, 3, 4),
        num_classes=13,
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

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type="PseudoMaskDataset",
        pseudo_masks=pseudo_masks,
        data_root={{_base_.data_root}},
        img_path="images/train",
        img_suffix=".png",
        pipeline={{_base_.train_pipeline}},
    )
)
