# PASCAL VOC 2012 + SBD aug WITHOUT background (segmentors.PascalVOCDataset20: 20 classes, VOC label
# 0 -> 255 ignored, k -> k - 1), MaskCLIP's "w/o Background" protocol (chongzhou96/MaskCLIP@245d31f
# configs/_base_/datasets/pascal_voc12_aug_20.py). Zero-shot split: unseen = potted plant, sheep,
# sofa, train, tv monitor (labels 15-19, the official suppress_labels=list(range(15, 20))).
# LoadAnnotations takes reduce_zero_label from the dataset's samples.
dataset_type = "PascalVOCDataset20"
data_root = "data/VOCdevkit/VOC2012"
num_classes = 20
crop_size = (512, 512)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="ValidateSegMap", num_classes=num_classes),
    dict(type="RandomResize", scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=0.75),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PhotoMetricDistortion"),
    dict(type="PackSegInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=(2048, 512), keep_ratio=True),
    dict(type="LoadAnnotations"),  # after Resize: metrics are computed at the original size
    dict(type="ValidateSegMap", num_classes=num_classes),
    dict(type="PackSegInputs"),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(
        type="ConcatDataset",
        datasets=[
            dict(
                type=dataset_type,
                data_root=data_root,
                ann_file="ImageSets/Segmentation/train.txt",
                data_prefix=dict(img_path="JPEGImages", seg_map_path="SegmentationClass"),
                pipeline=train_pipeline,
            ),
            dict(
                type=dataset_type,
                data_root=data_root,
                ann_file="ImageSets/Segmentation/aug.txt",
                data_prefix=dict(img_path="JPEGImages", seg_map_path="SegmentationClassAug"),
                pipeline=train_pipeline,
            ),
        ],
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file="ImageSets/Segmentation/val.txt",
        data_prefix=dict(img_path="JPEGImages", seg_map_path="SegmentationClass"),
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader

# MaskCLIP's own spellings (chongzhou96/MaskCLIP@245d31f tools/maskclip_utils/prompt_engineering.py)
voc_text_names = [
    "airplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "dining table",
    "dog",
    "horse",
    "motorbike",
    "person",
    "potted plant",
    "sheep",
    "sofa",
    "train",
    "tv monitor",
]
unseen_classes = ["pottedplant", "sheep", "sofa", "train", "tvmonitor"]  # dataset class names
unseen_ids = [15, 16, 17, 18, 19]
val_evaluator = dict(type="OVSegMetric", unseen_classes=unseen_classes)
test_evaluator = val_evaluator
