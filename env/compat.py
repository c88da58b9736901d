"""Every install-time compatibility fix ovdistill applies to third-party source, in one place.

Two host frameworks do not install on current torch/numpy/Pillow/setuptools as published. The
bootstrap (``env/bootstrap.py``) fetches their pinned sdists through pip from the configured index
(by name and version, checked by sha256), applies the edits below to the extracted source, and
builds wheels from it. Each edit names the file, the exact text it replaces and why; an edit whose
text is not found fails the build loudly, so a new upstream release cannot be patched silently
wrong. Drop an entry once upstream ships the fix.

No third-party code is committed: the fixes are textual edits applied at install time.

Runtime fixes (not source edits) live where they act and are listed in README's "Compatibility
fixes" table, e.g. mmengine's checkpoint resume under torch >= 2.6.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Edit:
    """Replace ``old`` by ``new`` in ``path`` (relative to the sdist root).

    ``regex`` edits treat ``old`` as a regular expression applied to every matching file under
    ``path`` (a directory) with a ``.py`` suffix; they must match at least once in the tree.
    """

    path: str
    old: str
    new: str
    reason: str
    regex: bool = False


@dataclasses.dataclass(frozen=True)
class Sdist:
    """A pinned distribution and the edits that make it build and run here.

    ``kind="sdist"``: the source archive is extracted, edited and built into a wheel.
    ``kind="wheel"``: a pure-Python wheel is unpacked, edited and repacked (``wheel pack``
    recomputes its RECORD), for projects whose sdist cannot build.

    Fetching (``pip download`` of ``name==version``) prepares the unedited sdist's metadata, i.e.
    runs its setup.py: ``build_constraints`` pin its isolated build environment
    (``--build-constraint``), and ``build_isolation=False`` runs it in the environment being built
    instead (for a setup.py that imports torch). Neither is part of :func:`fingerprint`: they change
    how the archive is fetched, not what is built.
    """

    name: str
    version: str
    sha256: str
    edits: tuple[Edit, ...]
    kind: str = "sdist"
    build_constraints: tuple[str, ...] = ()
    build_isolation: bool = True


MMCV = Sdist(
    name="mmcv",
    version="2.1.0",
    sha256="d387bcab66b467479b6660310e23746cfc79c6e57acf04094680adb499a5cd3f",
    # setup.py imports pkg_resources, removed from setuptools >= 81 (the edit below fixes the build)
    build_constraints=("setuptools<81",),
    edits=(
        Edit(
            "setup.py",
            "from pkg_resources import DistributionNotFound, get_distribution, parse_version\n",
            "from importlib.metadata import PackageNotFoundError as DistributionNotFound\n"
            "from importlib.metadata import distribution as get_distribution\n"
            "from packaging.version import parse as parse_version\n",
            "pkg_resources was removed from setuptools >= 81; the stdlib and packaging provide "
            "the same three names.",
        ),
        Edit(
            "setup.py",
            "                extra_compile_args['cxx'] = ['-std=c++17']\n",
            "                extra_compile_args['cxx'] = ['-std=c++20']\n",
            "torch >= 2.10 headers require C++20; mmcv forces C++17 for every torch > 1.12.",
        ),
        Edit(
            "setup.py",
            "                extra_compile_args['nvcc'] += ['-std=c++17']\n",
            "                extra_compile_args['nvcc'] += ['-std=c++20']\n",
            "Same as the C++ flag, for CUDA builds on GPU machines.",
        ),
    ),
)

DETECTRON2 = Sdist(
    name="pb1-detectron2",
    version="0.6",
    sha256="5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29",
    build_isolation=False,  # setup.py imports torch at the top
    edits=(
        Edit(
            "setup.py",
            "    ext_modules=get_extensions(),\n",
            "    ext_modules=[],\n",
            "The PyPI upload ships no detectron2/layers/csrc sources. Without _C, detectron2 uses "
            "torchvision's ops for RoIAlign/NMS; rotated ops and the C++ fast COCOeval are absent "
            "(ovdistill uses neither).",
        ),
        Edit(
            "setup.py",
            '    config_paths = glob.glob("configs/**/*.yaml", recursive=True) + glob.glob(\n'
            '        "configs/**/*.py", recursive=True\n'
            "    )\n",
            '    config_paths = ["configs/**/*.yaml", "configs/**/*.py"]\n',
            "The upload keeps the model-zoo configs inside detectron2/model_zoo/configs, not at the "
            "top level the globs search, so none were installed. package_data patterns are "
            "relative to the package directory.",
        ),
        Edit(
            "setup.py",
            '        "black==21.4b2",\n',
            '        "black",\n',
            "black 21.4b2 does not import with click >= 8.1; detectron2 only calls "
            "black.format_str, which current black keeps.",
        ),
        Edit(
            "detectron2",
            r"(?m)^from detectron2 import _C$",
            "try:\n"
            "    from detectron2 import _C\n"
            "except ImportError:  # built without compiled ops: see ovdistill env/compat.py\n"
            "    _C = None",
            "Four modules import the (absent) compiled _C at import time, so `import "
            "detectron2.layers` fails. Guarded, only the ops needing _C (deformable conv, rotated "
            "boxes, the fast COCOeval) fail when called.",
            regex=True,
        ),
        Edit(
            "detectron2/model_zoo/model_zoo.py",
            "import pkg_resources\n",
            "import importlib.resources\n",
            "pkg_resources was removed from setuptools >= 81.",
        ),
        Edit(
            "detectron2/model_zoo/model_zoo.py",
            "    cfg_file = pkg_resources.resource_filename(\n"
            '        "detectron2.model_zoo", os.path.join("configs", config_path)\n'
            "    )\n",
            "    cfg_file = str(\n"
            '        importlib.resources.files("detectron2.model_zoo").joinpath("configs", config_path)\n'
            "    )\n",
            "pkg_resources was removed from setuptools >= 81.",
        ),
        Edit(
            "detectron2/data/transforms/transform.py",
            "interp=Image.LINEAR",
            "interp=Image.BILINEAR",
            "Image.LINEAR was removed in Pillow 10 (it was an alias of BILINEAR).",
        ),
        Edit(
            "detectron2",
            r"\bnp\.(bool|int|float|str)\b",
            r"\1",
            "The np.bool/np.int/np.float/np.str aliases of the builtins were removed in numpy 1.24.",
            regex=True,
        ),
    ),
)

LVIS = Sdist(
    name="lvis",
    version="0.5.3",
    sha256="4f07153330df342b3161fafb46641ce7c02864113a8ddf0d6ffab6b02407bef0",
    kind="wheel",  # the 0.5.3 sdist lacks the requirements.txt its setup.py reads
    edits=(
        Edit(
            "lvis",
            r"\bnp\.float\b",
            "float",
            "LVISEval.accumulate uses np.float, removed in numpy 1.24: every evaluation crashed.",
            regex=True,
        ),
    ),
)

SDISTS = (LVIS, DETECTRON2, MMCV)  # cheapest build first


def apply_edits(sdist: Sdist, root: Path) -> list[str]:
    """Apply ``sdist.edits`` to the extracted source tree at ``root``; return a log of changes.

    Raises:
        RuntimeError: an edit's text is not found (upstream changed; the fix must be revisited).
    """
    log = []
    for edit in sdist.edits:
        target = root / edit.path
        if edit.regex:
            pattern = re.compile(edit.old)
            files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
            total = 0
            for file in files:
                text = file.read_text(encoding="utf-8")
                new_text, count = pattern.subn(edit.new, text)
                if count:
                    file.write_text(new_text, encoding="utf-8")
                    total += count
            if total == 0:
                raise RuntimeError(
                    f"{sdist.name}: pattern {edit.old!r} matched nothing under {target}"
                )
            log.append(f"{edit.path}: {total} x {edit.old!r} -- {edit.reason}")
            continue
        if not target.is_file():
            raise RuntimeError(
                f"{sdist.name}: {target} does not exist; cannot apply fix: {edit.reason}"
            )
        text = target.read_text(encoding="utf-8")
        if text.count(edit.old) != 1:
            raise RuntimeError(
                f"{sdist.name}: expected exactly one occurrence of {edit.old!r} in {target}, "
                f"found {text.count(edit.old)}; the fix ({edit.reason}) must be revisited"
            )
        target.write_text(text.replace(edit.old, edit.new), encoding="utf-8")
        log.append(f"{edit.path}: {edit.reason}")
    return log


def fingerprint(sdist: Sdist) -> str:
    """A short hash of an sdist pin and its edits: keys the cached patched wheel."""
    payload = repr((sdist.name, sdist.version, sdist.sha256, sdist.edits)).encode()
    return hashlib.sha256(payload).hexdigest()[:12]
