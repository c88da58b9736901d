#!/usr/bin/env python3
"""Create (or reuse) ovdistill's pinned environment and this checkout's ``.venv`` on top of it.

    python3 env/bootstrap.py            # what `make setup` runs; fast when the env already exists

The heavy environment lives outside the checkout, under ``$OVDISTILL_CACHE`` (default
``~/.cache/ovdistill``), in ``envs/<key>`` where the key hashes ``env/requirements.txt``, the
pinned sdists and their fixes (``env/compat.py``) and the Python version: every clone with the same
dependency spec shares it, and a changed spec builds a new one beside it. Building is resumable:
each stage leaves a stamp file, pip steps are idempotent, and an interrupted run simply continues on
the next call.

Stages of the shared environment:
  1. a virtual environment with the pinned requirements (torch, open_clip, mmengine, mmseg, ...);
  2. mmcv, detectron2 and lvis fetched through pip (by name, version and sha256, from the configured
     index) and rebuilt with the fixes of ``env/compat.py``; the built wheels are cached in
     ``wheels/`` (keyed by sdist, fixes, torch pin, Python and CUDA flag), so a new environment
     installs them in seconds;
  3. an import check of every host framework.

Then, per checkout, ``.venv`` is a light virtual environment (same base Python, no pip of its own)
whose site-packages adds the shared environment's through a ``.pth`` file, with this checkout
installed in editable mode: each clone runs its own code, and none is installed in the shared one.

Only the standard library is used here, so it runs with any Python >= 3.10 (POSIX: fcntl locks).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
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

LAYOUT_VERSION = "2"  # bump when the way an environment is assembled changes
IMPORT_CHECK = (
    "import torch, torchvision, open_clip, pycocotools, lvis, detectron2, mmcv.ops, mmseg.models; "
    "from torchvision.ops import nms; import torch; "
    "nms(torch.zeros(1, 4), torch.zeros(1), 0.5)"
)


CHECKOUT_VENV = REPO / ".venv"
VENV_STATE = "ovdistill-checkout.json"
"""In ``.venv``: marks it as made by this script and records what it was made for."""
SHARED_PTH = "ovdistill-shared-env.pth"
"""In ``.venv``'s site-packages: adds the shared environment's site-packages and its .pth files."""


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
    for sdist in compat.SDISTS:  # what is built, not how it is fetched
        digest.update(compat.fingerprint(sdist).encode())
    digest.update(f"{sys.version_info.major}.{sys.version_info.minor}".encode())
    digest.update(os.environ.get("FORCE_CUDA", "0").encode())
    return digest.hexdigest()[:12]


def torch_pin() -> str:
    for line in (HERE / "requirements.txt").read_text().splitlines():
        if line.startswith("torch=="):
            return line.strip()
    raise RuntimeError("env/requirements.txt pins no torch version")


def site_packages(prefix: Path) -> Path:
    """site-packages of a POSIX virtual environment created by this Python version."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return prefix / "lib" / version / "site-packages"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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


def download(sdist: compat.Sdist, *, python: Path, dest_dir: Path, env: dict) -> Path:
    """Fetch the pinned archive of ``sdist`` into ``dest_dir/<name>-<version>/`` once.

    ``python``'s pip downloads ``name==version`` from the configured index (pip.conf, ``PIP_*``
    variables) in hash-checking mode, so only a file with the pinned sha256 is taken; preparing the
    sdist's metadata follows ``sdist.build_constraints`` and ``sdist.build_isolation``. The file is
    checked again here and moved into place atomically.

    Raises:
        RuntimeError: pip left no single file, or its sha256 is not the pinned one.
    """
    dest_dir = dest_dir / f"{sdist.name}-{sdist.version}"
    cached = sorted(dest_dir.iterdir()) if dest_dir.is_dir() else []
    for path in cached:
        if path.suffix != ".part" and sha256_of(path) == sdist.sha256:
            return path
    log(f"fetching {sdist.name}=={sdist.version} ({sdist.kind}) through pip")
    with tempfile.TemporaryDirectory(prefix=f"ovdistill-fetch-{sdist.name}-") as tmp:
        requirement = Path(tmp) / "requirement.txt"
        requirement.write_text(f"{sdist.name}=={sdist.version} --hash=sha256:{sdist.sha256}\n")
        fetched_dir = Path(tmp) / "fetched"
        cmd = [
            python,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--dest",
            fetched_dir,
            "--requirement",
            requirement,
        ]
        cmd += ["--only-binary" if sdist.kind == "wheel" else "--no-binary", ":all:"]
        if sdist.build_constraints:
            constraints = Path(tmp) / "build-constraints.txt"
            constraints.write_text("".join(f"{line}\n" for line in sdist.build_constraints))
            cmd += ["--build-constraint", constraints]
        if not sdist.build_isolation:
            cmd.append("--no-build-isolation")
        run(cmd, env=env, cwd=tmp)
        fetched = sorted(fetched_dir.iterdir()) if fetched_dir.is_dir() else []
        if len(fetched) != 1:
            raise RuntimeError(
                f"pip download {sdist.name}=={sdist.version} left "
                f"{[p.name for p in fetched]} in {fetched_dir}, expected one file"
            )
        actual = sha256_of(fetched[0])
        if actual != sdist.sha256:
            raise RuntimeError(
                f"{fetched[0].name}: sha256 {actual} does not match the pinned "
                f"{sdist.sha256} (env/compat.py, {sdist.name})"
            )
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / fetched[0].name
        part = dest.with_name(dest.name + ".part")
        shutil.copy2(fetched[0], part)
        part.replace(dest)
    return dest


def build_patched_wheel(sdist: compat.Sdist, python: Path, cache: Path, env: dict) -> Path:
    """Return a wheel of ``sdist`` with its compat edits applied, building it if not cached."""
    key = hashlib.sha256(
        "|".join(
            [
                compat.fingerprint(sdist),
                torch_pin(),
                sys.version.split()[0][:4],
                os.environ.get("FORCE_CUDA", "0"),
            ]
        ).encode()
    ).hexdigest()[:12]
    wheel_dir = cache / "wheels" / f"{sdist.name}-{sdist.version}-{key}"
    wheels = sorted(wheel_dir.glob("*.whl"))
    if wheels:
        log(f"reusing cached wheel {wheels[0]}")
        return wheels[0]
    archive = download(sdist, python=python, dest_dir=cache / "downloads", env=env)
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
            run(
                [
                    python,
                    "-m",
                    "pip",
                    "wheel",
                    "--no-deps",
                    "--no-build-isolation",
                    "-w",
                    staging,
                    root,
                ],
                env=env,
            )
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
        run(
            [python, "-m", "pip", "install", "--no-deps", "--force-reinstall", wheel],
            env=build_env_vars,
        )
        mark_stage(env_dir, sdist.name)
    log("checking that every host framework imports")
    run([python, "-c", IMPORT_CHECK], env=build_env_vars)
    mark_stage(env_dir, "complete")


def remove_shared_checkout(env_dir: Path) -> None:
    """Uninstall ovdistill from the shared environment (earlier layouts installed a checkout)."""
    site = site_packages(env_dir)
    if not [*site.glob("ovdistill-*.dist-info"), *site.glob("ovdistill.egg-link")]:
        return
    log(f"uninstalling ovdistill from the shared environment {env_dir} (each checkout has its own)")
    run(
        [env_dir / "bin" / "python", "-m", "pip", "uninstall", "--yes", "-q", "ovdistill"],
        cwd=env_dir,
    )


def checkout_venv(env_dir: Path, *, venv: Path = CHECKOUT_VENV) -> None:
    """Make ``venv`` this checkout's light environment on top of the shared ``env_dir``.

    A real directory (an old link to the shared environment is replaced): a venv of the shared
    environment's base Python without pip, whose site-packages holds :data:`SHARED_PTH` and this
    checkout installed editable (pip and setuptools come from the shared environment). Up to date
    (nothing run) while :data:`VENV_STATE` matches; recreated when the shared environment or the
    checkout's path changed, reinstalled when ``pyproject.toml`` changed.

    Raises:
        RuntimeError: ``venv`` is a directory this script did not make.
    """
    state_file = venv / VENV_STATE
    wanted = {
        "env": str(env_dir),
        "checkout": str(REPO),
        "pyproject": sha256_of(REPO / "pyproject.toml"),
    }
    state = {}
    if venv.is_symlink() or venv.is_file():
        log(f"replacing {venv} (a link from an earlier layout) by this checkout's environment")
        venv.unlink()
    elif venv.is_dir() and state_file.is_file():
        state = json.loads(state_file.read_text() or "{}")
    elif venv.is_dir() and any(venv.iterdir()):
        raise RuntimeError(f"{venv} exists and was not made by env/bootstrap.py; remove it")
    installed = any(site_packages(venv).glob("ovdistill-*.dist-info"))
    if state == wanted and installed:
        return
    if any(state.get(key) != wanted[key] for key in ("env", "checkout")):
        if venv.is_dir():
            shutil.rmtree(venv)
        venv.mkdir()
        state_file.write_text("{}\n")  # claims the directory before anything can fail
        run([env_dir / "bin" / "python", "-m", "venv", "--without-pip", venv])
        pth = f"import site; site.addsitedir({str(site_packages(env_dir))!r})\n"
        (site_packages(venv) / SHARED_PTH).write_text(pth)
    # cwd: pip must not take an ovdistill.egg-info in the current directory for an installation
    run(
        [
            venv / "bin" / "python",
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-e",
            REPO,
        ],
        cwd=venv,
    )
    state_file.write_text(json.dumps(wanted, indent=1) + "\n")


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
        remove_shared_checkout(env_dir)
        checkout_venv(env_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
