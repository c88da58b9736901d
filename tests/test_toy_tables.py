"""tools/toy_tables.py: seeds reach the run, finished runs of the current config are reused,
interrupted ones resumed, other configs' runs trained again; mean / min / max over seeds."""

from __future__ import annotations

import json
import runpy
import subprocess
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parent.parent / "tools" / "toy_tables.py"


@pytest.fixture()
def tables():
    return runpy.run_path(str(TOOL))


def test_summary_is_mean_min_max_per_metric(tables):
    runs = [{"novel_ap50": 10.0, "base_ap50": 50.0}, {"novel_ap50": 20.0, "base_ap50": 53.0}]
    assert tables["summarize"](runs, ("novel_ap50", "base_ap50")) == {
        "novel_ap50": {"mean": 15.0, "min": 10.0, "max": 20.0},
        "base_ap50": {"mean": 51.5, "min": 50.0, "max": 53.0},
    }


def test_detection_runs_are_seeded_reused_resumed_and_restarted(tables, tmp_path, monkeypatch):
    """A finished run of an older config is never reported: it is trained again from scratch."""
    commands = []

    def fake_train(command, **kwargs):  # stands in for tools/train_net.py
        commands.append(command)
        run_dir = Path(command[command.index("OUTPUT_DIR") + 1])
        metrics = {"novel_ap50": 2.0, "base_ap50": 3.0, "all_ap50": 4.0}
        (run_dir / "ov_metrics.json").write_text(json.dumps(metrics))
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(subprocess, "run", fake_train)
    method = tables["METHODS"]["vild_text"]
    run_dir = tmp_path / "vild_text" / "seed1"
    run_dir.mkdir(parents=True)
    (run_dir / "result.json").write_text(json.dumps({"metrics": {"novel_ap50": 1.0}}))
    assert tables["run_once"](method, 1, tmp_path)["novel_ap50"] == 2.0  # no identity: retrained
    assert len(commands) == 1 and "--resume" not in commands[0]
    assert commands[0][commands[0].index("SEED") + 1] == "1"
    assert tables["run_once"](method, 1, tmp_path)["novel_ap50"] == 2.0  # same config: reused
    assert len(commands) == 1
    (run_dir / "result.json").unlink()  # interrupted after a checkpoint: resumed
    (run_dir / "last_checkpoint").write_text("model_0000299.pth")
    tables["run_once"](method, 1, tmp_path)
    assert len(commands) == 2 and "--resume" in commands[1]
    identity = json.loads((run_dir / "identity.json").read_text())
    (run_dir / "identity.json").write_text(json.dumps({**identity, "config": "0" * 64}))
    (run_dir / "result.json").unlink()  # a run of another config: not resumed, started over
    tables["run_once"](method, 1, tmp_path)
    assert len(commands) == 3 and "--resume" not in commands[2]
    assert not (run_dir / "last_checkpoint").exists()


def test_expected_ranges_cover_every_method_and_metric(tables):
    """configs/toy/expected.json (what `make demo` compares with) names real methods and metrics."""
    expected = json.loads(Path(tables["EXPECTED"]).read_text())
    assert {"vild_text", "vild"} <= set(expected)
    for name, stats in expected.items():
        method = tables["METHODS"][name]
        assert set(stats) == set(method.keys), name
        for key, s in stats.items():
            assert s["min"] <= s["mean"] <= s["max"], (name, key)


def test_write_expected_stores_the_measured_ranges(tables, tmp_path, monkeypatch):
    expected = tmp_path / "expected.json"
    expected.write_text(json.dumps({"vild": {"novel_ap50": {"mean": 1, "min": 1, "max": 1}}}))
    tables["main"].__globals__["EXPECTED"] = expected
    runs = iter(
        [
            {"novel_ap50": 4.0, "base_ap50": 6.0, "all_ap50": 5.0},
            {"novel_ap50": 6.0, "base_ap50": 8.0, "all_ap50": 7.0},
        ]
    )
    tables["main"].__globals__["run_once"] = lambda *a, **k: next(runs)
    table = tables["main"](["--seeds", "0", "1", "--methods", "vild_text", "--write-expected"])
    stored = json.loads(expected.read_text())
    assert stored["vild_text"] == table["vild_text"]
    assert stored["vild_text"]["novel_ap50"] == {"mean": 5.0, "min": 4.0, "max": 6.0}
    assert stored["vild"]["novel_ap50"]["mean"] == 1  # other methods' ranges are kept


def test_config_hash_follows_the_yaml_files_and_their_bases(tables, tmp_path):
    """A run is stale when its config file or a base of it changes, not when ovdistill adds a key."""
    base, child = tmp_path / "base.yaml", tmp_path / "child.yaml"
    base.write_text("SOLVER:\n  BASE_LR: 0.02\n")
    child.write_text('_BASE_: "base.yaml"\nSEED: 3\n')
    text = tables["_yaml_with_bases"](child)
    base.write_text("SOLVER:\n  BASE_LR: 0.04\n")
    assert tables["_yaml_with_bases"](child) != text
    assert "BASE_LR: 0.04" in tables["_yaml_with_bases"](child)


def test_ablation_rows_run_only_when_named(tables):
    """`toy_tables.py` with no --methods runs the table's rows, not the ablations."""
    ablations = {n for n, m in tables["METHODS"].items() if m.ablation}
    assert {"vild_text_lr04", "maskclip_plus_cosine"} <= ablations
    assert not ablations & set(tables["parse_args"]([]).methods)
    named = tables["parse_args"](["--methods", "vild_text_lr04"]).methods
    assert named == ["vild_text_lr04"]
    for name in ablations:
        assert tables["METHODS"][name].config.is_file(), name


def test_write_expected_leaves_ablations_out(tables, tmp_path):
    expected = tmp_path / "expected.json"
    expected.write_text("{}")
    tables["main"].__globals__["EXPECTED"] = expected
    tables["main"].__globals__["run_once"] = lambda *a, **k: {
        "novel_ap50": 1.0,
        "base_ap50": 2.0,
        "all_ap50": 3.0,
    }
    argv = ["--seeds", "0", "--methods", "vild_text", "vild_text_lr04", "--write-expected"]
    table = tables["main"](argv)
    assert set(table) == {"vild_text", "vild_text_lr04"}
    assert set(json.loads(expected.read_text())) == {"vild_text"}


def test_ablation_configs_change_one_setting():
    from mmengine.config import Config

    from detectors.config import load_config

    base, lr04 = load_config("toy/vild_text.yaml"), load_config("toy/vild_text_lr04.yaml")
    assert (base.SOLVER.BASE_LR, lr04.SOLVER.BASE_LR) == (0.02, 0.04)
    lr04.SOLVER.BASE_LR, lr04.OUTPUT_DIR = base.SOLVER.BASE_LR, base.OUTPUT_DIR
    assert lr04.dump() == base.dump()
    seg = Path(TOOL).resolve().parent.parent / "configs" / "seg" / "toy"
    dot = Config.fromfile(str(seg / "maskclip_plus.py")).model.decode_head
    cosine = Config.fromfile(str(seg / "maskclip_plus_cosine.py")).model.decode_head
    assert (dot.logits, cosine.logits) == ("dot", "cosine")
    changed = ("logits", "channels")  # channels: set by the dot head from the text dimension
    assert {k: v for k, v in cosine.items() if k not in changed} == {
        k: v for k, v in dot.items() if k not in changed
    }
