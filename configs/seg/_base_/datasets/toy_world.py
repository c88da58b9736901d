# The embedded toy world (distill.toy): 128 px images, label 0 background + 12 shapes (8 seen, 4 unseen).
# data_root is a placeholder: tools/train_seg.py / test_seg.py fill it when the config sets toy_world=True.
dataset_type = "ToySegDataset"
data_root = "<toy_world>"
num_classes = 13
crop_size = (128, 128)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="ValidateSegMap", num_classes=num_classes),
    dict(type="RandomResize", scale=crop_size, ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type="RandomCrop", crop_size=crop_size),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackSegInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="ValidateSegMap", num_classes=num_classes),
    dict(type="PackSegInputs"),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, split="train", pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, split="val", pipeline=test_pipeline),
)
test_dataloader = val_dataloader
# seen / unseen from seg/classes.json (dataset meta 'unseen_classes'); background counts as seen.
val_evaluator = dict(type="OVSegMetric")
test_evaluator = val_evaluator
