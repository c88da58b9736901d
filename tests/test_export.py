"""Export (TorchScript, ONNX Runtime), custom vocabularies, predictor and demo on tiny random-init ViLD and
BARON models.

Tolerances (exported vs eager Detectron2 ``model([{"image": ...}])``, same image, same vocabulary;
graphs traced on 64 x 64 and run on other sizes too):
TorchScript: identical ops, boxes within 1e-4 px, scores within 1e-5, classes equal; ONNX Runtime:
boxes within 1e-2 px, scores within 1e-4, classes equal. Detections are compared after matching (same
class, scores and boxes within tolerance) so that ties in NMS / top-k order cannot make the test flaky;
the number of detections must be equal.
"""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

pytest.importorskip("detectron2")
pytest.importorskip("onnxruntime")

from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from PIL import Image  # noqa: E402

from detectors.data import register_ov_dataset  # noqa: E402
from detectors.export import (  # noqa: E402
    ExportableViLD,
    ExportedDetector,
    describe_model,
    export_detector,
    prepare_image,
    rescale_boxes,
)
from detectors.predictor import OVPredictor, VocabularyEncoder, parse_vocabulary, read_image  # noqa: E402
from detectors.testing import (  # noqa: E402
    TINY_CLASSES,
    tiny_vild_config,
    write_random_text_encoder,
    write_tiny_dataset,
)
from distill.teachers import ClipTeacher  # noqa: E402
from distill.vocab import ClassifierFile  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TOL = {"torchscript": {"box": 1e-4, "score": 1e-5}, "onnx": {"box": 1e-2, "score": 1e-4}}
TEXT_CFG = {"width": 32, "heads": 2, "layers": 1, "context_length": 16, "vocab_size": 49408}
TEACHER_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8},
    "text_cfg": TEXT_CFG,
}
VOCAB_A = ["red box", "green box", "blue box"]
VOCAB_B = ["cat", "dog", "red star", "green box", "purple thing"]


def _teacher_files(root: Path, name: str, seed: int) -> tuple[Path, Path]:
    root.mkdir(parents=True, exist_ok=True)
    config = root / f"{name}.json"
    config.write_text(json.dumps(TEACHER_CFG))
    torch.manual_seed(seed)
    model = ClipTeacher(name, model_config=config, allow_random_init=True).model
    checkpoint = root / f"{name}.pt"
    torch.save(model.state_dict(), checkpoint)
    return config, checkpoint


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Tiny dataset, tiny random CLIP teacher (16-d), its training classifier, a random-init ViLD checkpoint."""
    root = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OVDISTILL_CACHE", str(root / "cache"))
        json_path, image_root = write_tiny_dataset(root / "data", num_images=3, base_only=True)
        name = f"export_tiny_{len(DatasetCatalog.list())}"
        register_ov_dataset(name, json_path, image_root, base_only=True)
        config, checkpoint = _teacher_files(root / "teacher", "ovd-export-rn", 0)
        teacher = ClipTeacher("ovd-export-rn", pretrained=str(checkpoint), model_config=config)
        names = [c[0] for c in TINY_CLASSES]
        classifier = ClassifierFile.from_embeddings(
            names,
            teacher.text_classifier(names, templates="simple"),
            teacher_fingerprint=teacher.fingerprint,
        )
        text = classifier.save(root / "text.pt")
        cfg = tiny_vild_config(train=name, test=name, text_embeddings=text, output_dir=root / "run")
        cfg.merge_from_list(
            [
                "MODEL.VILD.TEMPERATURE",
                0.2,
                "MODEL.VILD.TEACHER.NAME",
                "clip",
                "MODEL.VILD.TEACHER.MODEL_NAME",
                "ovd-export-rn",
                "MODEL.VILD.TEACHER.PRETRAINED",
                str(checkpoint),
                "MODEL.VILD.TEACHER.MODEL_CONFIG",
                str(config),
                "MODEL.VILD.TEACHER.TEMPLATES",
                "simple",
            ]
        )
        torch.manual_seed(0)
        model = build_model(cfg).eval()
        (root / "run").mkdir()
        DetectionCheckpointer(model, save_dir=str(root / "run")).save("model_final")
        (root / "run" / "ov_metrics.json").write_text(
            json.dumps({"novel_ap50": 1.0, "base_ap50": 2.0})
        )
        images = [np.array(Image.open(p).convert("RGB")) for p in sorted(image_root.iterdir())]
        images.append(
            np.array(Image.fromarray(images[0]).resize((90, 50)))
        )  # another size, not a multiple of 32
        yield {
            "root": root,
            "cfg": cfg,
            "model": model,
            "images": images,
            "image_root": image_root,
            "weights": root / "run" / "model_final.pth",
            "teacher": teacher,
            "dataset": name,
        }
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _embeddings(names: list[str], seed: int) -> torch.Tensor:
    return F.normalize(
        torch.randn(len(names), 16, generator=torch.Generator().manual_seed(seed)), dim=-1
    )


def _eager(model, image: np.ndarray, embeddings: torch.Tensor, names: list[str]):
    model.roi_heads.set_vocabulary(embeddings, names)
    with torch.no_grad():
        out = model([{"image": torch.as_tensor(image.transpose(2, 0, 1).astype("float32"))}])[0][
            "instances"
        ]
    return out.pred_boxes.tensor.numpy(), out.scores.numpy(), out.pred_classes.numpy()


def _assert_match(ref, got, *, box: float, score: float) -> dict[str, float]:
    """Same count; every reference detection has an exported one of the same class within tolerance."""
    (rb, rs, rc), (gb, gs, gc) = ref, got
    assert len(gb) == len(rb) > 0
    box_err = score_err = 0.0
    for i in range(len(rb)):
        close = (
            (gc == rc[i]) & (np.abs(gs - rs[i]) <= score) & (np.abs(gb - rb[i]).max(axis=1) <= box)
        )
        assert close.any(), (
            f"reference detection {i} (class {rc[i]}, score {rs[i]:.6f}, box {rb[i]}) unmatched"
        )
        j = int(np.flatnonzero(close)[np.argmin(np.abs(gb[close] - rb[i]).max(axis=1))])
        box_err = max(box_err, float(np.abs(gb[j] - rb[i]).max()))
        score_err = max(score_err, float(abs(gs[j] - rs[i])))
    np.testing.assert_allclose(np.sort(gs), np.sort(rs), atol=score)
    return {"box": box_err, "score": score_err}


@pytest.fixture(scope="module")
def exported(world):
    out = world["root"] / "export_input"
    card = describe_model(world["cfg"], world["weights"], config_file="tiny")
    return export_detector(
        world["model"], out, example_size=(64, 64), vocabulary="input", card=card
    )


def test_exportable_module_is_the_eager_inference(world):
    model = world["model"]
    for names, seed in ((VOCAB_A, 1), (VOCAB_B, 2)):
        emb = _embeddings(names, seed)
        ref = _eager(model, world["images"][0], emb, names)
        with torch.no_grad():
            got = ExportableViLD(model)(
                torch.as_tensor(world["images"][0].transpose(2, 0, 1)).float(), emb
            )
        assert (
            len(set(ref[2].tolist())) > 1
        )  # the scores are not degenerate: several classes are predicted
        for r, g in zip(ref, got):
            np.testing.assert_array_equal(r, g.numpy())


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_model_matches_eager_for_two_vocabularies(world, exported, fmt):
    detector = ExportedDetector(exported[fmt])
    for names, seed in ((VOCAB_A, 1), (VOCAB_B, 2)):
        emb = _embeddings(names, seed)
        for image in (world["images"][0], world["images"][-1]):  # 64 x 64 (traced size) and 50 x 90
            ref = _eager(world["model"], image, emb, names)
            got = detector(torch.as_tensor(image.transpose(2, 0, 1)).float(), emb)
            assert got[2].max() < len(names)
            _assert_match(ref, got, **TOL[fmt])


def test_onnx_file_is_valid_and_runs_under_onnxruntime(exported):
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(exported["onnx"]))
    onnx.checker.check_model(model)
    session = ort.InferenceSession(str(exported["onnx"]), providers=["CPUExecutionProvider"])
    inputs = {i.name: i.shape for i in session.get_inputs()}
    assert inputs["image"] == [3, "H", "W"] and inputs["text_embeddings"][0] == "K"
    image = np.full((3, 96, 160), 120, np.float32)
    boxes, scores, classes = session.run(
        None, {"image": image, "text_embeddings": _embeddings(VOCAB_B, 3).numpy()}
    )
    assert (
        boxes.shape[1] == 4
        and len(boxes) == len(scores) == len(classes)
        and classes.max() < len(VOCAB_B)
    )
    assert (
        boxes[:, 2].max() <= 160 and boxes[:, 3].max() <= 96
    )  # clipped to this image, not the traced one


def test_baked_vocabulary_export_matches_eager(world):
    names, emb = VOCAB_B, _embeddings(VOCAB_B, 4)
    written = export_detector(
        world["model"],
        world["root"] / "export_baked",
        example_size=(64, 64),
        vocabulary="baked",
        names=names,
        text_embeddings=emb,
    )
    ref = _eager(world["model"], world["images"][-1], emb, names)
    for fmt in ("torchscript", "onnx"):
        detector = ExportedDetector(written[fmt])
        assert detector.baked and detector.names == names
        _assert_match(
            ref,
            detector(torch.as_tensor(world["images"][-1].transpose(2, 0, 1)).float()),
            **TOL[fmt],
        )
        with pytest.raises(ValueError, match="baked in"):
            detector(torch.zeros(3, 64, 64), emb)


def test_vild_ensemble_exports_with_seen_input_or_baked(world):
    """ViLD-ensemble: the per-class branch weighting follows ``seen`` (names trained on), input or baked."""
    cfg = world["cfg"].clone()
    cfg.merge_from_list(["MODEL.VILD.ENSEMBLE", True])
    torch.manual_seed(1)
    model = build_model(cfg).eval()
    names, emb = VOCAB_B, _embeddings(VOCAB_B, 5)
    seen = [n in ("red box", "green box") for n in names]  # base classes of the tiny dataset
    image = world["images"][-1]
    ref = _eager(model, image, emb, names)
    assert model.roi_heads.get_vocabulary()[2].tolist() == seen
    x = torch.as_tensor(image.transpose(2, 0, 1)).float()
    with torch.no_grad():
        got = ExportableViLD(model)(x, emb, torch.tensor(seen))
        flipped = ExportableViLD(model)(x, emb, ~torch.tensor(seen))
    for r, g in zip(ref, got):
        np.testing.assert_array_equal(r, g.numpy())
    assert not np.array_equal(ref[1], flipped[1].numpy())  # seen changes the scores
    written = export_detector(model, world["root"] / "export_ensemble", example_size=(64, 64))
    for fmt in ("torchscript", "onnx"):
        detector = ExportedDetector(written[fmt])
        assert detector.needs_seen
        _assert_match(ref, detector(x, emb, seen), **TOL[fmt])
        with pytest.raises(ValueError, match="needs seen"):
            detector(x, emb)
    baked = export_detector(
        model,
        world["root"] / "export_ensemble_baked",
        example_size=(64, 64),
        vocabulary="baked",
        names=names,
        text_embeddings=emb,
        formats=["onnx"],
    )
    assert json.loads(baked["card"].read_text())["export"]["ensemble_seen"] == seen
    _assert_match(ref, ExportedDetector(baked["onnx"])(x), **TOL["onnx"])


def test_baron_exports_through_the_tool_and_matches_eager(world, monkeypatch, tmp_path):
    """BARON's region embedding (frozen text encoder of the pseudo words, test temperature) exports like ViLD's:
    the tool resolves the text encoder from the run's config.yaml, both graphs match the eager model."""
    monkeypatch.setenv("OVDISTILL_CACHE", str(world["root"] / "cache"))
    encoder = write_random_text_encoder(
        tmp_path / "encoder.pt", fingerprint=world["teacher"].fingerprint
    )
    cfg = world["cfg"].clone()
    cfg.merge_from_list(
        [
            "MODEL.META_ARCHITECTURE",
            "BaronRCNN",
            "MODEL.ROI_HEADS.NAME",
            "BaronROIHeads",
            "MODEL.BARON.TEXT_ENCODER",
            str(encoder),
            "MODEL.BARON.NUM_WORDS",
            2,
            "MODEL.BARON.TEST_TEMPERATURE",
            0.1,
            "OUTPUT_DIR",
            str(tmp_path / "run"),
        ]
    )
    torch.manual_seed(2)
    model = build_model(cfg).eval()
    run = tmp_path / "run"
    run.mkdir()
    DetectionCheckpointer(model, save_dir=str(run)).save("model_final")
    (run / "config.yaml").write_text(cfg.dump())  # as train_net records the resolved config
    names, emb = VOCAB_B, _embeddings(VOCAB_B, 6)
    image = world["images"][-1]
    x = torch.as_tensor(image.transpose(2, 0, 1)).float()
    ref = _eager(model, image, emb, names)
    with torch.no_grad():
        got = ExportableViLD(model)(x, emb)
    for r, g in zip(ref, got):
        np.testing.assert_array_equal(r, g.numpy())

    user_config = tmp_path / "baron.yaml"  # a user's config: the text encoder left to be resolved
    cfg.merge_from_list(["MODEL.BARON.TEXT_ENCODER", ""])
    user_config.write_text(cfg.dump())
    export_main = runpy.run_path(str(REPO / "tools" / "export_model.py"))["main"]
    assert (
        export_main(
            [
                "--config",
                str(user_config),
                "--weights",
                str(run / "model_final.pth"),
                "--output",
                str(tmp_path / "export"),
                "--example-size",
                "64",
                "64",
            ]
        )
        == 0
    )
    card = json.loads((tmp_path / "export" / "model_card.json").read_text())
    assert card["model"]["method"] == "BARON" and card["model"]["test_temperature"] == 0.1
    for fmt, name in (("torchscript", "model.ts"), ("onnx", "model.onnx")):
        _assert_match(ref, ExportedDetector(tmp_path / "export" / name)(x, emb), **TOL[fmt])


def test_model_card_records_teacher_vocabulary_data_metrics_and_export(world, exported):
    card = json.loads(exported["card"].read_text())
    assert card["teacher"]["fingerprint"] == world["teacher"].fingerprint
    assert card["teacher"]["model_name"] == "ovd-export-rn"
    assert card["training_vocabulary"]["names"] == [c[0] for c in TINY_CLASSES]
    assert card["training_vocabulary"]["not_trained_on"] == ["blue box"]
    assert card["data"]["train"] == [world["dataset"]]
    assert card["metrics"] == {"novel_ap50": 1.0, "base_ap50": 2.0}
    assert card["export"]["vocabulary"] == "input" and card["export"]["example_size"] == [64, 64]
    assert card["export"]["embed_dim"] == 16 and card["export"]["files"] == {
        "torchscript": "model.ts",
        "onnx": "model.onnx",
    }
    markdown = exported["card"].with_name("MODEL_CARD.md").read_text()
    assert "## teacher" in markdown and world["teacher"].fingerprint in markdown


def test_exported_detector_rejects_bad_inputs(exported, tmp_path):
    detector = ExportedDetector(exported["onnx"])
    with pytest.raises(ValueError, match=r"model\.onnx.*embedding size 32 does not match.*16"):
        detector(torch.zeros(3, 64, 64), torch.ones(2, 32))
    with pytest.raises(ValueError, match=r"K >= 1"):
        detector(torch.zeros(3, 64, 64), torch.zeros(0, 16))
    with pytest.raises(ValueError, match=r"model\.onnx: image must be a \[3, H, W\] tensor"):
        detector(torch.zeros(64, 64, 3), torch.ones(2, 16))
    lonely = tmp_path / "model.onnx"
    lonely.write_bytes(exported["onnx"].read_bytes())
    with pytest.raises(FileNotFoundError, match="model_card.json"):
        ExportedDetector(lonely)


def test_prepare_image_applies_the_test_resize_and_boxes_map_back():
    image = np.zeros((50, 100, 3), np.uint8)
    prepared = prepare_image(
        image, min_size=64, max_size=64
    )  # ResizeShortestEdge(64, 64): long side 64
    assert prepared.image_hw == (32, 64) and prepared.tensor.shape == (3, 32, 64)
    boxes = rescale_boxes(np.array([[8.0, 4.0, 64.0, 40.0]]), prepared)
    np.testing.assert_allclose(
        boxes, [[12.5, 6.25, 100.0, 50.0]]
    )  # clipped to the resized image, rescaled
    with pytest.raises(ValueError, match=r"expected an \[H, W, 3\] image"):
        prepare_image(np.zeros((4, 4), np.uint8), min_size=64, max_size=64)


def test_vocabulary_parsing_errors():
    assert parse_vocabulary("cat, dog,red star") == ["cat", "dog", "red star"]
    with pytest.raises(ValueError, match="--vocabulary: the vocabulary is empty"):
        parse_vocabulary(" , ", field="--vocabulary")
    with pytest.raises(ValueError, match="empty class name at position"):
        parse_vocabulary("cat,,dog")
    with pytest.raises(ValueError, match="duplicate"):
        parse_vocabulary("Cat,cat ")


def test_predictor_encodes_new_names_once_and_matches_exported(world, exported, monkeypatch):
    monkeypatch.setenv("OVDISTILL_CACHE", str(world["root"] / "cache"))
    predictor = OVPredictor(world["cfg"], world["weights"], vocabulary="red box, cat, red star")
    assert (
        predictor.encoder.teacher_loads == 1
    )  # "red box" from the training file, two names encoded
    expected = world["teacher"].text_classifier(["cat", "red star"], templates="simple")
    torch.testing.assert_close(predictor.embeddings[1:], expected)
    again = OVPredictor(world["cfg"], world["weights"], vocabulary="red box, cat, red star")
    assert again.encoder.teacher_loads == 0  # cached
    torch.testing.assert_close(again.embeddings, predictor.embeddings)
    image = world["images"][
        -1
    ]  # 50 x 90: resized to 36 x 64 by the test transform, boxes mapped back
    eager = predictor(image)
    assert len(eager) > 0 and int(eager.pred_classes.max()) < 3 and eager.image_size == (50, 90)
    assert float(eager.pred_boxes.tensor[:, 2].max()) > 64  # in original pixels
    with pytest.raises(
        ValueError, match="embedding size 32 does not match the model's text embedding size 16"
    ):
        predictor.set_vocabulary(["cat", "dog"], torch.ones(2, 32))
    bare = world["cfg"].clone()  # no classifier file: the export's model card names it
    bare.MODEL.VILD.TEXT_EMBEDDINGS = ""
    onnx_predictor = OVPredictor(bare, exported["onnx"], vocabulary="red box, cat, red star")
    assert onnx_predictor.cfg.MODEL.VILD.TEXT_EMBEDDINGS == world["cfg"].MODEL.VILD.TEXT_EMBEDDINGS
    assert onnx_predictor.encoder.teacher_loads == 0
    got = onnx_predictor(image)
    _assert_match(
        (eager.pred_boxes.tensor.numpy(), eager.scores.numpy(), eager.pred_classes.numpy()),
        (got.pred_boxes.tensor.numpy(), got.scores.numpy(), got.pred_classes.numpy()),
        **TOL["onnx"],
    )


def test_predictor_bad_vocabularies_are_clear_errors(world, monkeypatch, tmp_path):
    monkeypatch.setenv("OVDISTILL_CACHE", str(tmp_path / "cache"))
    encoder = VocabularyEncoder(world["cfg"])
    with pytest.raises(
        ValueError, match=r"--vocabulary: a class name is too long .*context length 16"
    ):
        encoder(["a very long class name " * 3], field="--vocabulary")
    with pytest.raises(ValueError, match="vocabulary is empty"):
        encoder([])
    other_config, other_checkpoint = _teacher_files(tmp_path / "other", "ovd-export-other", 1)
    cfg = world["cfg"].clone()
    cfg.merge_from_list(
        [
            "MODEL.VILD.TEACHER.MODEL_NAME",
            "ovd-export-other",
            "MODEL.VILD.TEACHER.PRETRAINED",
            str(other_checkpoint),
            "MODEL.VILD.TEACHER.MODEL_CONFIG",
            str(other_config),
        ]
    )
    with pytest.raises(ValueError, match="not the one the model was trained with"):
        VocabularyEncoder(cfg)(["cat"])


def test_checkpoint_of_another_embedding_size_is_a_clear_error(world, tmp_path):
    other = ClassifierFile.from_embeddings(
        [c[0] for c in TINY_CLASSES],
        F.normalize(torch.randn(len(TINY_CLASSES), 8), dim=-1),
        teacher_fingerprint="other",
    ).save(tmp_path / "text8.pt")
    cfg = world["cfg"].clone()
    cfg.MODEL.VILD.TEXT_EMBEDDINGS = str(other)
    with pytest.raises(
        ValueError, match=r"model_final\.pth: .*projection.weight \[16, .*vs model \[8, .*text8\.pt"
    ):
        OVPredictor(cfg, world["weights"])


def test_read_image_names_files_that_are_not_images(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(ValueError, match=r"notes\.png: not a readable image"):
        read_image(bad)


def test_export_and_demo_tools_end_to_end(world, monkeypatch, tmp_path):
    """The two CLIs in-process: export with a baked custom vocabulary, then draw detections into PNGs."""
    monkeypatch.setenv("OVDISTILL_CACHE", str(world["root"] / "cache"))
    config = tmp_path / "tiny.yaml"
    config.write_text(world["cfg"].dump())
    export_main = runpy.run_path(str(REPO / "tools" / "export_model.py"))["main"]
    assert (
        export_main(
            [
                "--config",
                str(config),
                "--weights",
                str(world["weights"]),
                "--output",
                str(tmp_path / "export"),
                "--vocabulary",
                "baked",
                "--names",
                "cat,red box",
                "--format",
                "onnx",
            ]
        )
        == 0
    )
    card = json.loads((tmp_path / "export" / "model_card.json").read_text())
    assert (
        card["export"]["names"] == ["cat", "red box"]
        and (tmp_path / "export" / "model.onnx").is_file()
    )
    assert not (tmp_path / "export" / "model.ts").exists()

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for i, image in enumerate(world["images"][:2]):
        Image.fromarray(image).save(inputs / f"img{i}.png")
    (inputs / "readme.txt").write_text("skipped: not an image suffix")
    demo_main = runpy.run_path(str(REPO / "tools" / "demo.py"))["main"]
    assert (
        demo_main(
            [
                "--config",
                str(config),
                "--weights",
                str(world["weights"]),
                "--vocabulary",
                "red box,green box,cat",
                "--input",
                str(inputs),
                "--output",
                str(tmp_path / "out"),
                "--confidence",
                "0.0",
            ]
        )
        == 0
    )
    for i, image in enumerate(world["images"][:2]):
        drawn = np.array(Image.open(tmp_path / "out" / f"img{i}.png").convert("RGB"))
        assert drawn.shape == image.shape and not np.array_equal(drawn, image)  # boxes were drawn
    with pytest.raises(ValueError, match="--vocabulary: the vocabulary is empty"):
        demo_main(
            [
                "--config",
                str(config),
                "--weights",
                str(world["weights"]),
                "--vocabulary",
                " ,",
                "--input",
                str(inputs),
                "--output",
                str(tmp_path / "out2"),
            ]
        )
    with pytest.raises(ValueError, match=r"--vocabulary: a class name is too long"):
        demo_main(
            [
                "--config",
                str(config),
                "--weights",
                str(world["weights"]),
                "--vocabulary",
                "cat," + "a much too long name " * 4,
                "--input",
                str(inputs),
                "--output",
                str(tmp_path / "out2"),
            ]
        )
    (inputs / "broken.jpg").write_text("not a jpeg")
    with pytest.raises(ValueError, match=r"broken\.jpg: not a readable image"):
        demo_main(
            [
                "--config",
                str(config),
                "--weights",
                str(world["weights"]),
                "--vocabulary",
                "cat",
                "--input",
                str(inputs),
                "--output",
                str(tmp_path / "out2"),
            ]
        )
