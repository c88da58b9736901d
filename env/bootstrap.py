#!/usr/bin/env python3
"""Create (or reuse) ovdistill's pinned environment and point ``.venv`` at it.

    python3 env/bootstrap.py            # what `make setup` runs; fast when the env already exists

The environment lives outside the checkout, under ``$OVDISTILL_CACHE`` (default
``~/.cache/ovdistill``), in ``envs/<key>`` where the key hashes ``env/requirements.txt``,
``env/compat.py`` and the Python version: every clone with the same dependency spec shares it, and a
changed spec builds a new one beside it. Building is resumable: each stage leaves a stamp file, pip
steps are idempotent, and an interrupted run simply continues on the next call.

Stages:
  1. a virtual environment with the pinned requirements (torch, open_clip, mmengine, mmseg, ...);
  2. mmcv and detectron2 built from pinned sdists with the fixes of ``env/compat.py``; the built
     wheels are cached in ``wheels/`` (keyed by sdist, fixes, torch pin, Python and CUDA flag), so a
     new environment installs them in seconds;
  3. an import check of every host framework;
  4. this checkout installed in editable mode (re-pointed whenever another clone used the env).

Only the standard library is used here, so it runs with any Python >= 3.10.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from importlib import util as importlib_util
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _load_compat():
    """env/ is not a package (it runs before any environment exists): load compat.py by path."""
    spec = importlib_util.spec_from_file_location("ovdistill_env_compat", HERE / "compat.py")
    module = importlib_util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    return module


compat = _load_compat()

LAYOUT_VERSION = "1"  # bump when the way an environment is assembled changes
IMPORT_CHECK = (
    "import torch, torchvision, open_clip, pycocotools, lvis, detectron2, mmcv.ops, mmseg.models; "
    "from torchvision.ops import nms; import torch; "
    "nms(torch.zeros(1, 4), torch.zeros(1), 0.5)"
)


def log(message: str) -> None:
    print(f"[bootstrap] {message}", flush=True)


def cache_root() -> Path:
    if os.environ.get("OVDISTILL_CACHE"):
        return Path(os.environ["OVDISTILL_CACHE"]).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser().resolve() / "ovdistill"


def env_key() -> str:
    digest = hashlib.sha256()
    digest.update(LAYOUT_VERSION.encode())
    digest.update((HERE / "requirements.txt").read_bytes())
    digest.update(compat.COMPAT_FILE.read_bytes())
    digest.update(f"{sys.version_info.major}.{sys.version_info.minor}".encode())
    digest.update(os.environ.get("FORCE_CUDA", "0").encode())
    return digest.hexdigest()[:12]


def torch_pin() -> str:
    for line in (HERE / "requirements.txt").read_text().splitlines():
        if line.startswith("torch=="):
            return line.strip()
    raise RuntimeError("env/requirements.txt pins no torch version")


def run(cmd: list[str], **kwargs) -> None:
    log("$ " + " ".join(str(c) for c in cmd))
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)


@contextlib.contextmanager
def locked(path: Path):
    """Serialize concurrent bootstraps of the same environment (two `make` calls at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def download(url: str, sha256: str, dest_dir: Path) -> Path:
    """Download ``url`` into ``dest_dir`` once, verifying its sha256; atomic via a temp file."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / url.rsplit("/", 1)[-1]
    if dest.exists() and hashlib.sha256(dest.read_bytes()).hexdigest() == sha256:
        return dest
    log(f"downloading {url}")
    with urllib.request.urlopen(url, timeout=300) as response:
        data = response.read()
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise RuntimeError(f"{dest.name}: sha256 {actual} does not match the pinned {sha256}")
    tmp = dest.with_suffix(dest.suffix + ".part")
    tmp.write_bytes(data)
    tmp.replace(dest)
    return dest


def build_patched_wheel(sdist: compat.Sdist, python: Path, cache: Path, env: dict) -> Path:
    """Return a wheel of ``sdist`` with its compat edits applied, building it if not cached."""
    key = hashlib.sha256(
        "|".join(
            [compat.fingerprint(sdist), torch_pin(), sys.version.split()[0][:4],
             os.environ.get("FORCE_CUDA", "0")]
        ).encode()
    ).hexdigest()[:12]
    wheel_dir = cache / "wheels" / f"{sdist.name}-{sdist.version}-{key}"
    wheels = sorted(wheel_dir.glob("*.whl"))
    if wheels:
        log(f"reusing cached wheel {wheels[0]}")
        return wheels[0]
    archive = download(sdist.url, sdist.sha256, cache / "downloads")
    with tempfile.TemporaryDirectory(prefix=f"ovdistill-{sdist.name}-") as tmp:
        staging = Path(tmp) / "wheelhouse"
        staging.mkdir()
        if sdist.kind == "wheel":
            run([python, "-m", "wheel", "unpack", "-d", Path(tmp) / "src", archive], env=env)
        else:
            with tarfile.open(archive) as tar:
                tar.extractall(Path(tmp) / "src", filter="data")
        (root,) = [p for p in (Path(tmp) / "src").iterdir() if p.is_dir()]
        for line in compat.apply_edits(sdist, root):
            log(f"fix {sdist.name}: {line}")
        start = time.time()
        if sdist.kind == "wheel":
            run([python, "-m", "wheel", "pack", "-d", staging, root], env=env)
        else:
            log(f"building {sdist.name} {sdist.version} (mmcv takes ~20 min on 2 cores, once)")
            run([python, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", staging,
                 root], env=env)
        log(f"built {sdist.name} in {time.time() - start:.0f} s")
        (built,) = staging.glob("*.whl")
        wheel_dir.mkdir(parents=True, exist_ok=True)
        final = wheel_dir / built.name
        shutil.copy2(built, final.with_suffix(".part"))
        final.with_suffix(".part").replace(final)
    return final


def stage_done(env_dir: Path, name: str) -> bool:
    return (env_dir / f".stage-{name}").exists()


def mark_stage(env_dir: Path, name: str) -> None:
    (env_dir / f".stage-{name}").write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))


def build_env(env_dir: Path, cache: Path) -> None:
    python = env_dir / "bin" / "python"
    if not python.exists():
        run([sys.executable, "-m", "venv", env_dir])
    build_env_vars = dict(os.environ)
    build_env_vars["PATH"] = f"{env_dir / 'bin'}:{os.environ.get('PATH', '')}"
    build_env_vars.setdefault("MAX_JOBS", str(max(1, min(os.cpu_count() or 1, 8))))
    build_env_vars["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if not stage_done(env_dir, "requirements"):
        start = time.time()
        run([python, "-m", "pip", "install", "--upgrade", "pip==25.3"], env=build_env_vars)
        run([python, "-m", "pip", "install", "-r", HERE / "requirements.txt"], env=build_env_vars)
        mark_stage(env_dir, "requirements")
        log(f"requirements installed in {time.time() - start:.0f} s")
    for sdist in compat.SDISTS:
        if stage_done(env_dir, sdist.name):
            continue
        wheel = build_patched_wheel(sdist, python, cache, build_env_vars)
        run([python, "-m", "pip", "install", "--no-deps", "--force-reinstall", wheel],
            env=build_env_vars)
        mark_stage(env_dir, sdist.name)
    log("checking that every host framework imports")
    run([python, "-c", IMPORT_CHECK], env=build_env_vars)
    mark_stage(env_dir, "complete")


def install_checkout(env_dir: Path) -> None:
    """Install this checkout editable unless the env already resolves ``distill`` to it."""
    python = env_dir / "bin" / "python"
    probe = subprocess.run(
        [python, "-c", "import importlib.util as u; s = u.find_spec('distill'); "
         "print(s.submodule_search_locations[0] if s else '')"],
        capture_output=True, text=True, cwd="/",
    )
    current = probe.stdout.strip()
    if current and Path(current).resolve() == (REPO / "distill").resolve():
        return
    run([python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q", "-e", REPO])


def link_venv(env_dir: Path) -> None:
    link = REPO / ".venv"
    if link.is_symlink() and Path(os.readlink(link)) == env_dir:
        return
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.exists():
        raise RuntimeError(f"{link} exists and is not a link made by the bootstrap; remove it")
    link.symlink_to(env_dir)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--print-env", action="store_true", help="print the env path and exit")
    args = parser.parse_args()
    cache = cache_root()
    env_dir = cache / "envs" / f"py{sys.version_info.major}{sys.version_info.minor}-{env_key()}"
    if args.print_env:
        print(env_dir)
        return 0
    with locked(cache / "envs" / f"{env_dir.name}.lock"):
        if not stage_done(env_dir, "complete"):
            start = time.time()
            log(f"building the environment in {env_dir} (resumable; cold ~20-30 min)")
            build_env(env_dir, cache)
            log(f"environment ready in {time.time() - start:.0f} s")
        install_checkout(env_dir)
        link_venv(env_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
