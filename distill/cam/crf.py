"""Optional DenseCRF refinement of pseudo-label scores (CLIP-ES: 10 iterations, Gaussian (1, 3), bilateral (67, 3, 4)).

Uses the ``pydensecrf2`` package from PyPI (it installs the ``pydensecrf`` module; the original
``pydensecrf`` 1.0rc3 sdist no longer builds on Python 3.11). It is optional: without it,
:func:`dense_crf` raises :class:`CrfUnavailableError` with the install command. The bilateral term sees
the image given by :func:`crf_image`: by default what the reference feeds it (linyq2117/CLIP-ES@3893f81
``eval_cam_with_crf.py``: the BGR image minus the Caffe mean ``(104.008, 116.669, 122.675)``, cast back to
uint8, so values below the mean wrap around to 256 - x), or, as an option, the RGB image as is.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

import numpy as np

__all__ = [
    "CRF_INPUTS",
    "CrfParams",
    "CrfUnavailableError",
    "crf_available",
    "crf_image",
    "dense_crf",
]

INSTALL_HINT = "pip install pydensecrf2"
CAFFE_MEAN_BGR = (104.008, 116.669, 122.675)  # CLIP-ES eval_cam_with_crf.py ``mean_bgr``
CRF_INPUTS = ("official_wrapped", "rgb")


class CrfUnavailableError(ImportError):
    """DenseCRF refinement was requested but no CRF library is installed."""


@dataclass(frozen=True)
class CrfParams:
    """DenseCRF parameters (CLIP-ES / deeplab-pytorch defaults)."""

    iters: int = 10
    pos_xy_std: float = 1.0
    pos_w: float = 3.0
    bi_xy_std: float = 67.0
    bi_rgb_std: float = 3.0
    bi_w: float = 4.0
    clip: float = 1e-5  # probabilities are clipped below this before ``-log``


def _densecrf_module() -> ModuleType | None:
    try:
        return importlib.import_module("pydensecrf.densecrf")
    except ImportError:
        return None


def crf_available() -> bool:
    """Whether a DenseCRF library (``pydensecrf2``) can be imported."""
    return _densecrf_module() is not None


def crf_image(rgb: np.ndarray, *, mode: str = "official_wrapped") -> np.ndarray:
    """The ``[H, W, 3]`` uint8 image the CRF's bilateral term sees, from a uint8 RGB ``rgb``.

    ``"official_wrapped"``: CLIP-ES's ``eval_cam_with_crf.py`` reads the image as float BGR,
    subtracts ``CAFFE_MEAN_BGR`` and casts back with ``astype(np.uint8)``: numpy truncates towards
    zero and wraps modulo 256 (-22.7 -> -22 -> 234). The bilateral kernel is invariant to a constant
    shift and to the channel order, so the wrap of values below the mean is the only effect.
    ``"rgb"``: ``rgb`` unchanged (ovdistill before the recipe audit).
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"image must be uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}")
    if mode == "rgb":
        return rgb
    if mode != "official_wrapped":
        raise ValueError(f"CRF input mode must be one of {CRF_INPUTS}, got {mode!r}")
    shifted = rgb[:, :, ::-1].astype(np.float32) - np.asarray(CAFFE_MEAN_BGR, np.float32)
    return np.mod(np.trunc(shifted).astype(np.int64), 256).astype(np.uint8)


def dense_crf(
    image: np.ndarray, probs: np.ndarray, *, params: CrfParams = CrfParams()
) -> np.ndarray:
    """Mean-field DenseCRF inference.

    Args:
        image: ``[H, W, 3]`` uint8 RGB.
        probs: ``[C, H, W]`` non-negative class scores (unary ``-log(max(probs, clip))``; need not sum to 1).
        params: CRF parameters.

    Returns:
        ``[C, H, W]`` float32 marginals (sum to 1 per pixel).

    Raises:
        CrfUnavailableError: ``pydensecrf2`` is not installed.
    """
    dcrf = _densecrf_module()
    if dcrf is None:
        raise CrfUnavailableError(
            f"CRF refinement needs the 'pydensecrf2' package ({INSTALL_HINT}); or run without CRF"
        )
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    c, h, w = probs.shape
    if (h, w) != image.shape[:2]:
        raise ValueError(f"probs {probs.shape} do not match image {image.shape}")
    unary = np.ascontiguousarray(
        -np.log(np.clip(probs.reshape(c, -1), params.clip, None)), dtype=np.float32
    )
    crf = dcrf.DenseCRF2D(w, h, c)
    crf.setUnaryEnergy(unary)
    crf.addPairwiseGaussian(sxy=params.pos_xy_std, compat=params.pos_w)
    crf.addPairwiseBilateral(
        sxy=params.bi_xy_std,
        srgb=params.bi_rgb_std,
        rgbim=np.ascontiguousarray(image),
        compat=params.bi_w,
    )
    return np.asarray(crf.inference(params.iters), dtype=np.float32).reshape(c, h, w)
