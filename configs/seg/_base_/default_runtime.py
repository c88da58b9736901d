# ovdistill segmentation runtime (MMSeg conventions) + our plug-ins, registered into MMSeg's registries.
# (Written out rather than inherited with 'mmseg::_base_/...': mmengine 0.10.7 resolves 'pkg::' bases with
# pkg_resources, which setuptools >= 81 no longer ships.)
default_scope = "mmseg"
custom_imports = dict(imports=["segmentors"], allow_failed_imports=False)
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="nccl"),
)
vis_backends = [dict(type="LocalVisBackend")]
visualizer = dict(
    type="SegLocalVisualizer", vis_backends=vis_backends
)  # named after the run (one per Runner)
log_processor = dict(by_epoch=False)
log_level = "INFO"
load_from = None
resume = False
