"""The environment bootstrap (``env/bootstrap.py``, ``env/compat.py``).

The slow tests use the environment this test run uses (same ``OVDISTILL_CACHE``, Python and pins):
they clone this repository, bootstrap the clone onto the same shared environment and check that each
checkout runs its own code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]

FINGERPRINTS = {"lvis": "60e4404883ea", "pb1-detectron2": "caf206a2c1e8", "mmcv": "11246f36b901"}
"""compat.fingerprint of each pin: they key the shared environment and the cached patched wheels,
so a change means a cold rebuild (~25 min). Update them only with a deliberate change of a pin or
an edit."""


def _load_bootstrap() -> ModuleType:
    """env/ is not a package (it runs before any environment exists): load bootstrap.py by path."""
    spec = importlib.util.spec_from_file_location(
        "ovdistill_env_bootstrap", REPO / "env" / "bootstrap.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bootstrap = _load_bootstrap()
compat = bootstrap.compat


def _shared_env(root: Path) -> Path:
    """The shared environment ``root``'s bootstrap uses, with this test run's variables."""
    proc = subprocess.run(
        [sys.executable, str(root / "env" / "bootstrap.py"), "--print-env"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(proc.stdout.strip())


def _bootstrap(root: Path) -> str:
    """Run ``root``'s bootstrap (``make setup``) with this test run's variables; its output."""
    proc = subprocess.run(
        [sys.executable, str(root / "env" / "bootstrap.py")],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _this_checkout_env() -> Path:
    """The shared environment under ``.venv`` here (skips unless the bootstrap made ``.venv``)."""
    if not (REPO / ".venv" / bootstrap.VENV_STATE).is_file():
        pytest.skip(f"{REPO / '.venv'} is not a checkout environment: run `make setup`")
    return _shared_env(REPO)


def test_pins_name_no_download_address() -> None:
    names = {field.name for field in dataclasses.fields(compat.Sdist)}
    assert "url" not in names
    for sdist in compat.SDISTS:
        values = [getattr(sdist, name) for name in names]
        assert not [v for v in values if isinstance(v, str) and "://" in v], sdist.name


def test_fingerprints_are_stable() -> None:
    assert {sdist.name: compat.fingerprint(sdist) for sdist in compat.SDISTS} == FINGERPRINTS


def test_checkout_env_refuses_a_foreign_directory(tmp_path: Path) -> None:
    venv = tmp_path / ".venv"
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    with pytest.raises(RuntimeError, match="not made by env/bootstrap.py"):
        bootstrap.checkout_venv(tmp_path / "shared", venv=venv)


@pytest.mark.slow
@pytest.mark.parametrize("sdist", compat.SDISTS, ids=lambda sdist: sdist.name)
def test_download_fetches_the_pinned_archive_through_pip(sdist, tmp_path: Path) -> None:
    # the configured index, with this environment's pip (and torch, for detectron2's setup.py)
    fetched = bootstrap.download(
        sdist, python=Path(sys.executable), dest_dir=tmp_path, env=dict(os.environ)
    )
    assert hashlib.sha256(fetched.read_bytes()).hexdigest() == sdist.sha256
    assert fetched.name.startswith(sdist.name) and sdist.version in fetched.name
    assert (
        bootstrap.download(sdist, python=Path("/nonexistent/python"), dest_dir=tmp_path, env={})
        == fetched
    )  # cached: pip is not run again


@pytest.mark.slow
def test_each_clone_runs_its_own_checkout(tmp_path: Path) -> None:
    shared = _this_checkout_env()
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    if _shared_env(clone) != shared:
        pytest.skip(
            "the committed environment spec differs from this checkout's: bootstrapping "
            "the clone would build another shared environment"
        )
    (clone / ".venv").symlink_to(shared)  # the previous layout: a link to the shared environment

    start = time.perf_counter()
    _bootstrap(clone)
    print(f"bootstrap of a clone onto the shared environment: {time.perf_counter() - start:.1f} s")
    assert (clone / ".venv").is_dir() and not (clone / ".venv").is_symlink()
    start = time.perf_counter()
    again = _bootstrap(clone)
    print(f"bootstrap when up to date: {time.perf_counter() - start:.2f} s")
    assert "[bootstrap] $" not in again  # up to date: no command run
    assert not list(bootstrap.site_packages(shared).glob("ovdistill-*.dist-info"))

    code = "import detectors, distill; print(detectors.__file__, distill.__file__)"
    for root in (REPO, clone):
        proc = subprocess.run(
            [str(root / ".venv" / "bin" / "python"), "-c", code],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        )
        assert [Path(p).parent.parent for p in proc.stdout.split()] == [root, root], proc.stdout
    train_net = [str(clone / ".venv" / "bin" / "python"), str(clone / "tools" / "train_net.py")]
    proc = subprocess.run(
        [*train_net, "--config", "nope.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert str(clone / "configs" / "nope.yaml") in proc.stderr, proc.stderr[-2000:]
    assert str(REPO / "configs") not in proc.stderr
    ruff = subprocess.run(
        [str(clone / ".venv" / "bin" / "python"), "-m", "ruff", "--version"],
        capture_output=True,
        text=True,
    )
    assert ruff.returncode == 0, ruff.stderr


@pytest.mark.slow
def test_shared_env_loses_an_installed_checkout(tmp_path: Path) -> None:
    """Older layouts installed a checkout into the shared environment; the bootstrap removes it."""
    shared = _this_checkout_env()
    fake = tmp_path / "shared"  # a stand-in for the shared environment, with its packages (pip)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fake)], check=True)
    pth = f"import site; site.addsitedir({str(bootstrap.site_packages(shared))!r})\n"
    (bootstrap.site_packages(fake) / bootstrap.SHARED_PTH).write_text(pth)
    subprocess.run(
        [
            str(fake / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-e",
            str(REPO),
        ],
        cwd=fake,
        check=True,
    )
    assert list(bootstrap.site_packages(fake).glob("ovdistill-*.dist-info"))

    bootstrap.remove_shared_checkout(fake)
    assert not list(bootstrap.site_packages(fake).glob("ovdistill-*.dist-info"))
    assert not list(bootstrap.site_packages(fake).glob("__editable__*ovdistill*"))
