# CPU-minutes schedule for the toy world's from-scratch students (1500 iterations, ~3 min on 2 cores): AdamW 3e-3,
# 30-iteration warmup, poly decay. Measured: at 300 iterations MaskCLIP+ reached only 15.7 seen / 2.6 unseen mIoU.
# (The real-dataset configs keep MaskCLIP+'s SGD recipe; a random-init tiny ResNet learns far faster with AdamW.)
optimizer = dict(type="AdamW", lr=3e-3, weight_decay=1e-4)
optim_wrapper = dict(type="OptimWrapper", optimizer=optimizer, clip_grad=None)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.1, begin=0, end=30, by_epoch=False),
    dict(type="PolyLR", eta_min=0.0, power=0.9, begin=30, end=1500, by_epoch=False),
]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=1500, val_interval=1500)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=25, log_metric_by_epoch=False),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=500, max_keep_ckpts=2),
    sampler_seed=dict(type="DistSamplerSeedHook"),
    visualization=dict(type="SegVisualizationHook"),
)
randomness = dict(seed=0)
