# PASCAL Context-59 (background ignored) with MaskCLIP+'s 10 unseen classes:
# cow, motorbike, sofa, cat, boat, fence, bird, tv monitor, keyboard, aeroplane.
dataset_type = "PascalContextDataset59"
data_root = "data/VOCdevkit/VOC2010/"
num_classes = 59
img_scale = (520, 520)
crop_size = (480, 480)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", reduce_zero_label=True),
    dict(type="ValidateSegMap", num_classes=num_classes),
    dict(type="RandomResize", scale=img_scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=0.75),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PhotoMetricDistortion"),
    dict(type="PackSegInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=img_scale, keep_ratio=True),
    dict(type="LoadAnnotations", reduce_zero_label=True),
    dict(type="ValidateSegMap", num_classes=num_classes),
    dict(type="PackSegInputs"),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file="ImageSets/SegmentationContext/train.txt",
        data_prefix=dict(img_path="JPEGImages", seg_map_path="SegmentationClassContext"),
        pipeline=train_pipeline,
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
        ann_file="ImageSets/SegmentationContext/val.txt",
        data_prefix=dict(img_path="JPEGImages", seg_map_path="SegmentationClassContext"),
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader

# text names of the 59 object/stuff classes (MMSeg's order)
# MaskCLIP's own spellings (chongzhou96/MaskCLIP@245d31f tools/maskclip_utils/prompt_engineering.py)
context59_text_names = [
    "airplane",
    "bag",
    "bed",
    "bedclothes",
    "bench",
    "bicycle",
    "bird",
    "boat",
    "book",
    "bottle",
    "building",
    "bus",
    "cabinet",
    "car",
    "cat",
    "ceiling",
    "chair",
    "cloth",
    "computer",
    "cow",
    "cup",
    "curtain",
    "dog",
    "door",
    "fence",
    "floor",
    "flower",
    "food",
    "grass",
    "ground",
    "horse",
    "keyboard",
    "light",
    "motorbike",
    "mountain",
    "mouse",
    "person",
    "plate",
    "platform",
    "potted plant",
    "road",
    "rock",
    "sheep",
    "shelves",
    "sidewalk",
    "sign",
    "sky",
    "snow",
    "sofa",
    "table",
    "track",
    "train",
    "tree",
    "truck",
    "tv monitor",
    "wall",
    "water",
    "window",
    "wood",
]
unseen_classes = [
    "cow",
    "motorbike",
    "sofa",
    "cat",
    "boat",
    "fence",
    "bird",
    "tvmonitor",
    "keyboard",
    "aeroplane",
]
val_evaluator = dict(type="OVSegMetric", unseen_classes=unseen_classes)
test_evaluator = val_evaluator
unseen_ids = [19, 33, 48, 14, 7, 24, 6, 54, 31, 0]
