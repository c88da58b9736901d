# "Annotation-free" MaskCLIP+ on PASCAL VOC 2012 + aug without background (official README 58.0
# mIoU; chongzhou96/MaskCLIP@245d31f
# configs/maskclip_plus/anno_free/maskclip_plus_r50_deeplabv2_r101-d8_512x512_2k_voc12aug_20.py): no
# class label is read in training: every object pixel takes the RN50 teacher's argmax over the 20
# classes, for all 2k iterations (start_clip_guided=(1, -1), no self-training); SGD lr 0.01 wd 5e-4
# poly. As in the official config (LoadAnnotations(reduce_zero_label=True,
# suppress_labels=range(20))), the ground-truth BACKGROUND pixels stay ignored: the 20 classes are
# all "unseen" of the transductive mode, not annotation_free=True (which would relabel every pixel).
_base_ = ["./maskclip_plus_r50_deeplabv2_r101-d8_512x512_20k_voc12aug-20.py"]

model = dict(unseen_classes=list(range(20)), self_training_start=None)
param_scheduler = [dict(type="PolyLR", eta_min=1e-4, power=0.9, begin=0, end=2000, by_epoch=False)]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=2000, val_interval=1000)
default_hooks = dict(checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=1000))
