"""OV-LVIS evaluation through lvis-api's ``LVISEval`` (federated, 300 detections per image)."""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .detections import check_detections

if (
    TYPE_CHECKING
):  # lvis is imported lazily: importing it runs logging.basicConfig and loads cv2/matplotlib
    from lvis import LVIS

__all__ = ["evaluate_ov_lvis", "lvis_numpy_incompatibility", "LVIS_METRIC_KEYS"]

# our key -> LVISEval.results key
LVIS_METRIC_KEYS = {
    "ap": "AP",
    "ap50": "AP50",
    "ap75": "AP75",
    "aps": "APs",
    "apm": "APm",
    "apl": "APl",
    "apr": "APr",
    "apc": "APc",
    "apf": "APf",
}
# LVISEval's Params.area_rng (inclusive bounds) for all/small/medium/large
_AREA_RANGES = {"aps": (0.0, 32.0**2), "apm": (32.0**2, 96.0**2), "apl": (96.0**2, 1e5**2)}


def lvis_numpy_incompatibility() -> str | None:
    """Why the installed lvis-api cannot run on the installed numpy, or None if it can.

    lvis 0.5.3 (the latest release) calls ``np.float`` in ``LVISEval.accumulate``; that alias
    was removed in numpy 1.24, so evaluation crashes with ``AttributeError`` after the
    (expensive) per-image pass. Checked up front from the installed source.
    """
    if hasattr(np, "float"):
        return None
    from lvis import LVISEval

    source = inspect.getsource(LVISEval.accumulate)
    if "np.float)" in source or "np.float," in source:
        return (
            f"lvis-api ({inspect.getsourcefile(LVISEval)}) uses np.float in LVISEval.accumulate, which "
            f"numpy {np.__version__} no longer has (removed in numpy 1.24); install an lvis build with "
            f"np.float replaced by float (see env/compat.py)"
        )
    return None


def _load_lvis(gt: LVIS | str | os.PathLike) -> LVIS:
    from lvis import LVIS

    if isinstance(gt, LVIS):
        return gt
    if not os.path.isfile(gt):
        raise FileNotFoundError(f"LVIS annotation file not found: {gt}")
    with contextlib.redirect_stdout(io.StringIO()):
        return LVIS(os.fspath(gt))


def _empty_result(lvis_gt: LVIS) -> dict[str, float]:
    """Metrics for an empty detection list: 0 where ground truth exists, NaN where none."""
    anns = lvis_gt.dataset["annotations"]
    freq = {c["id"]: c["frequency"] for c in lvis_gt.dataset["categories"]}
    out = {key: (0.0 if anns else math.nan) for key in ("ap", "ap50", "ap75")}
    for key, (lo, hi) in _AREA_RANGES.items():
        out[key] = 0.0 if any(lo <= a["area"] <= hi for a in anns) else math.nan
    for key, group in (("apr", "r"), ("apc", "c"), ("apf", "f")):
        out[key] = 0.0 if any(freq[a["category_id"]] == group for a in anns) else math.nan
    return {key: out[key] for key in LVIS_METRIC_KEYS}


def evaluate_ov_lvis(
    gt: LVIS | str | os.PathLike,
    detections: Sequence[dict],
    *,
    iou_type: str = "bbox",
    max_dets: int = 300,
) -> dict[str, float]:
    """LVIS AP / AP50 / AP75 / APs / APm / APl / APr / APc / APf in percent.

    Uses ``LVISEval`` unchanged: IoU 0.50:0.95, federated evaluation (detections of a category
    neither present nor in the image's ``neg_category_ids`` are ignored; unmatched detections of
    ``not_exhaustive_category_ids`` are not penalized), at most ``max_dets`` detections per image
    (the highest-scoring ones). A metric LVISEval cannot compute (e.g. APr with no rare ground
    truth; LVISEval's -1) is NaN. An empty detection list gives 0 wherever ground truth exists.

    Raises:
        RuntimeError: the installed lvis-api is incompatible with numpy (see
            :func:`lvis_numpy_incompatibility`).
        ValueError: a malformed detection (index and field named).
    """
    problem = lvis_numpy_incompatibility()
    if problem:
        raise RuntimeError(problem)
    if max_dets <= 0:
        raise ValueError(f"max_dets must be > 0, got {max_dets}")
    from lvis import LVISEval, LVISResults

    lvis_gt = _load_lvis(gt)
    dets = check_detections(detections, image_ids=lvis_gt.get_img_ids(), iou_type=iou_type)
    if not dets:
        return _empty_result(lvis_gt)
    lvis_logger = logging.getLogger("lvis")
    previous = lvis_logger.level
    lvis_logger.setLevel(logging.ERROR)  # LVISResults warns on every in-memory result list
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            lvis_dt = LVISResults(lvis_gt, dets, max_dets=max_dets)
            evaluator = LVISEval(lvis_gt, lvis_dt, iou_type=iou_type)
            evaluator.params.max_dets = max_dets
            evaluator.run()
    finally:
        lvis_logger.setLevel(previous)
    results = evaluator.get_results()
    out = {}
    for key, name in LVIS_METRIC_KEYS.items():
        value = float(results[name])
        out[key] = math.nan if value < 0 else value * 100.0
    return out
