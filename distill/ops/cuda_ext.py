"""Build/load the fused CUDA extension (JIT, cached) and wrap it in an autograd Function.

The extension is compiled on first use with ``torch.utils.cpp_extension.load`` for exactly one GPU
architecture (the current device's, unless ``TORCH_CUDA_ARCH_LIST`` is set or ``arch`` is given)
into ``distill.utils.cache_dir("torch_extensions", ...)``, keyed by a hash of the sources, the
torch/CUDA versions and the architecture flags, so later runs just import it.

Finding the toolkit: ``CUDA_HOME``/``CUDA_PATH`` if set (must be valid), else the toolkit behind
the ``nvcc`` on ``PATH`` (following wrapper scripts such as ``/usr/local/bin/nvcc`` via
``nvcc -dryrun``), else ``/usr/local/cuda``/``/usr/local/cuda-*``. torch reads ``CUDA_HOME`` once,
when ``torch.utils.cpp_extension`` is first imported, so the found path is exported before that.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from distill.utils import cache_dir

__all__ = ["CSRC", "find_cuda_home", "load_extension", "roi_embed_cuda"]

CSRC = Path(__file__).resolve().parent / "csrc"
SOURCES = ("roi_embed.cpp", "roi_embed_cuda.cu")
HEADERS = ("roi_embed_geometry.h",)

_LOADED: dict[str, ModuleType] = {}


def _is_cuda_home(path: Path) -> bool:
    return (path / "bin" / "nvcc").is_file() and (path / "include" / "cuda_runtime.h").is_file()


def _nvcc_install_dir(nvcc: str) -> Path | None:
    """Toolkit root of ``nvcc``, asking nvcc itself (works through wrapper scripts)."""
    try:
        proc = subprocess.run(
            [nvcc, "-dryrun", "-E", "-x", "cu", os.devnull],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"^#\$ _HERE_=(.+)$", proc.stdout + proc.stderr, flags=re.MULTILINE)
    return Path(match.group(1).strip()).parent if match else None


def find_cuda_home() -> Path | None:
    """The CUDA toolkit root (holding ``bin/nvcc`` and ``include/cuda_runtime.h``), or None."""
    candidates = [Path(v) for v in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")) if v]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(Path(nvcc).resolve().parent.parent)
        here = _nvcc_install_dir(nvcc)
        if here is not None:
            candidates.append(here)
    candidates.append(Path("/usr/local/cuda"))
    candidates.extend(sorted(Path("/usr/local").glob("cuda-*"), reverse=True))
    return next((c for c in candidates if _is_cuda_home(c)), None)


def _prepare_cuda_home() -> Path:
    """Make sure ``torch.utils.cpp_extension`` uses a real toolkit; return its root."""
    env = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if env and not _is_cuda_home(Path(env)):
        raise RuntimeError(
            f"roi_embed CUDA build: CUDA_HOME/CUDA_PATH={env!r} has no bin/nvcc and "
            "include/cuda_runtime.h; point it at the CUDA toolkit root or unset it"
        )
    home = Path(env) if env else find_cuda_home()
    if home is None:
        raise RuntimeError(
            "roi_embed CUDA build: nvcc not found (not on PATH, no CUDA_HOME/CUDA_PATH, no "
            f"/usr/local/cuda*). Install the CUDA toolkit matching torch's CUDA {torch.version.cuda}, "
            "or set OVDISTILL_ROI_EMBED_IMPL=reference to use the PyTorch implementation"
        )
    if not env and "torch.utils.cpp_extension" not in sys.modules:
        os.environ["CUDA_HOME"] = str(home)
    from torch.utils import cpp_extension

    seen = cpp_extension.CUDA_HOME
    if seen is None or not _is_cuda_home(Path(seen)):
        raise RuntimeError(
            f"roi_embed CUDA build: torch.utils.cpp_extension resolved CUDA_HOME={seen!r}, which "
            f"is not a CUDA toolkit root (it was imported before CUDA_HOME was set). Start Python "
            f"with CUDA_HOME={home}"
        )
    return Path(seen)


def _arch_flags(arch: str | None) -> list[str]:
    """nvcc flags for one architecture ("9.0" -> sm_90); [] defers to ``TORCH_CUDA_ARCH_LIST``."""
    if arch is None:
        if os.environ.get("TORCH_CUDA_ARCH_LIST"):
            return []
        if not torch.cuda.is_available():
            raise RuntimeError(
                "roi_embed CUDA build: no CUDA device to pick an architecture for; pass arch='9.0' "
                "or set TORCH_CUDA_ARCH_LIST"
            )
        major, minor = torch.cuda.get_device_capability()
        arch = f"{major}.{minor}"
    if not re.fullmatch(r"\d+\.\d+a?", arch):
        raise ValueError(f"arch: expected like '9.0', got {arch!r}")
    num = arch.replace(".", "")
    return [f"-gencode=arch=compute_{num},code=sm_{num}"]


def load_extension(
    *, arch: str | None = None, build_dir: str | os.PathLike | None = None, verbose: bool = False
) -> ModuleType:
    """Compile (first time) and import the CUDA extension; cached per sources/versions/arch.

    Args:
        arch: one compute capability such as ``"9.0"``; default: the current device's.
        build_dir: where to build; default ``cache_dir("torch_extensions", "roi_embed-<hash>")``.

    Raises:
        RuntimeError: no usable CUDA toolkit, or the compiler failed (its output is included).
    """
    home = _prepare_cuda_home()
    flags = _arch_flags(arch)
    digest = hashlib.sha256()
    for name in SOURCES + HEADERS:
        digest.update((CSRC / name).read_bytes())
    digest.update(
        f"{torch.__version__}|{torch.version.cuda}|{home}|{flags}|{sys.version_info[:2]}".encode()
    )
    tag = digest.hexdigest()[:16]
    if tag in _LOADED:
        return _LOADED[tag]
    build = (
        Path(build_dir)
        if build_dir is not None
        else cache_dir("torch_extensions", f"roi_embed-{tag}")
    )
    build.mkdir(parents=True, exist_ok=True)
    from torch.utils import cpp_extension

    try:
        module = cpp_extension.load(
            name=f"ovdistill_roi_embed_{tag}",
            sources=[str(CSRC / s) for s in SOURCES],
            extra_include_paths=[str(CSRC)],
            extra_cflags=["-O3"],
            extra_cuda_cflags=["-O3", *flags],
            build_directory=str(build),
            with_cuda=True,
            verbose=verbose,
        )
    except (RuntimeError, OSError, ImportError, subprocess.CalledProcessError) as err:
        raise RuntimeError(
            f"roi_embed CUDA build failed (nvcc: {home / 'bin' / 'nvcc'}, torch {torch.__version__} "
            f"CUDA {torch.version.cuda}, build dir {build}). Set OVDISTILL_ROI_EMBED_IMPL=reference "
            f"to use the PyTorch implementation. Compiler output:\n{err}"
        ) from err
    _LOADED[tag] = module
    return module


class _RoIEmbedFunction(torch.autograd.Function):
    """features [B, C, H, W] -> [K, C]; backward scatters into grad_F with atomicAdd."""

    @staticmethod
    def forward(
        ctx,
        features: Tensor,
        rois: Tensor,
        output_size: int,
        spatial_scale: float,
        sampling_ratio: int,
        aligned: bool,
    ) -> Tensor:
        ext = load_extension()
        ctx.save_for_backward(rois)
        ctx.shape = tuple(features.shape)
        ctx.opts = (output_size, spatial_scale, sampling_ratio, aligned)
        return ext.forward(features, rois, output_size, spatial_scale, sampling_ratio, aligned)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        if not ctx.needs_input_grad[0]:
            return (None,) * 6
        (rois,) = ctx.saved_tensors
        grad_features = load_extension().backward(grad, rois, *ctx.shape, *ctx.opts)
        return grad_features, None, None, None, None, None


def roi_embed_cuda(
    features: Tensor,
    rois: Tensor,
    *,
    output_size: int,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """Fused CUDA op on validated inputs: features ``[B, C, H, W]`` CUDA, rois ``[K, 5]`` -> ``[K, C]``."""
    acc = torch.float64 if features.dtype == torch.float64 else torch.float32
    rois = rois.detach().to(device=features.device, dtype=acc).contiguous()
    return _RoIEmbedFunction.apply(
        features, rois, output_size, spatial_scale, sampling_ratio, aligned
    )
