"""Vocabularies, OV-COCO / LVIS splits, base-only json writer, COCO json validation."""

import json
import runpy
from pathlib import Path

import pytest
import torch

from distill.vocab import (
    OV_COCO_BASE_IDS,
    OV_COCO_NOVEL_IDS,
    OV_COCO_NOVEL_NAMES,
    Vocabulary,
    check_teacher_fingerprint,
    cosine_logits,
    dense_cosine_logits,
    load_coco_json,
    lvis_frequency_groups,
    make_base_only_json,
    names_and_synonyms,
    normalize_name,
    validate_class_names,
)

REPO = Path(__file__).resolve().parents[1]
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]


def test_ov_coco_split_ids():
    assert len(OV_COCO_BASE_IDS) == 48 and len(OV_COCO_NOVEL_IDS) == 17
    assert OV_COCO_NOVEL_IDS == (5, 6, 17, 18, 21, 22, 28, 32, 36, 41, 47, 49, 61, 63, 76, 81, 87)
    assert OV_COCO_NOVEL_NAMES[5] == "airplane" and OV_COCO_NOVEL_NAMES[87] == "scissors"
    assert set(OV_COCO_BASE_IDS) <= set(COCO_IDS) and set(OV_COCO_NOVEL_IDS) <= set(COCO_IDS)
    excluded = set(COCO_IDS) - set(OV_COCO_BASE_IDS) - set(OV_COCO_NOVEL_IDS)
    assert sorted(excluded) == [10, 11, 13, 14, 37, 39, 40, 43, 46, 58, 64, 67, 77, 88, 89]


def _coco_dict():
    cats = [{"id": i, "name": f"class{i}"} for i in COCO_IDS]
    images = [
        {"id": 1, "width": 100, "height": 100, "file_name": "a.jpg"},
        {"id": 2, "width": 100, "height": 100, "file_name": "b.jpg"},
    ]
    anns = [
        {
            "id": 10,
            "image_id": 1,
            "category_id": 1,
            "bbox": [0, 0, 10, 10],
            "area": 100,
            "iscrowd": 0,
        },  # base
        {
            "id": 11,
            "image_id": 1,
            "category_id": 5,
            "bbox": [5, 5, 10, 10],
            "area": 100,
            "iscrowd": 0,
        },  # novel
        {
            "id": 12,
            "image_id": 2,
            "category_id": 10,
            "bbox": [1, 1, 5, 5],
            "area": 25,
            "iscrowd": 0,
        },  # excluded
        {
            "id": 13,
            "image_id": 2,
            "category_id": 90,
            "bbox": [1, 1, 5, 5],
            "area": 25,
            "iscrowd": 0,
        },  # base
    ]
    return {"images": images, "annotations": anns, "categories": cats}


def _lvis_dict():
    cats = [
        {
            "id": 1,
            "name": "aerosol_can",
            "synonyms": ["aerosol_can", "spray_can"],
            "frequency": "r",
        },
        {"id": 2, "name": "apple", "synonyms": ["apple"], "frequency": "c"},
        {"id": 3, "name": "banana", "synonyms": ["banana"], "frequency": "f"},
        {"id": 4, "name": "cat", "synonyms": ["cat"], "frequency": "f"},
    ]
    images = [
        {
            "id": 1,
            "width": 50,
            "height": 50,
            "neg_category_ids": [],
            "not_exhaustive_category_ids": [],
        }
    ]
    anns = [
        {"id": i + 1, "image_id": 1, "category_id": c, "bbox": [0, 0, 5, 5], "area": 25}
        for i, c in enumerate([1, 1, 2, 3, 4])
    ]
    return {"images": images, "annotations": anns, "categories": cats}


# ----------------------------------------------------------------------------------- Vocabulary
def test_vocabulary_from_coco_json_with_split_ids():
    vocab = Vocabulary.from_coco_json(
        _coco_dict(), novel_ids=OV_COCO_NOVEL_IDS, base_ids=OV_COCO_BASE_IDS
    )
    assert len(vocab) == 65
    assert sorted(vocab.ids_with_role("novel")) == list(OV_COCO_NOVEL_IDS)
    assert int(vocab.base_mask.sum()) == 48 and int(vocab.novel_mask.sum()) == 17
    assert vocab.base_mask.dtype == torch.bool and not bool(
        (vocab.base_mask & vocab.novel_mask).any()
    )
    assert vocab.category_ids == sorted(
        set(OV_COCO_BASE_IDS) | set(OV_COCO_NOVEL_IDS)
    )  # file order kept
    full = Vocabulary.from_coco_json(
        _coco_dict(), novel_ids=OV_COCO_NOVEL_IDS, base_ids=OV_COCO_BASE_IDS, keep_excluded=True
    )
    assert len(full) == 80 and full.roles.count("excluded") == 15
    # without base_ids, every non-novel class is base
    assert (
        int(Vocabulary.from_coco_json(_coco_dict(), novel_ids=OV_COCO_NOVEL_IDS).base_mask.sum())
        == 63
    )
    assert int(Vocabulary.from_coco_json(_coco_dict(), novel_ids=()).base_mask.sum()) == 80


def test_vocabulary_split_field_wins_and_lvis_frequency(tmp_path):
    data = _lvis_dict()
    vocab = Vocabulary.from_coco_json(data)
    assert vocab.roles == ["rare", "base", "base", "base"]
    assert vocab.novel_mask.tolist() == [True, False, False, False]
    assert vocab.synonyms[0] == ["aerosol_can", "spray_can"]
    assert vocab.text_inputs()[0] == ["aerosol can", "spray can"]
    data["categories"][3]["split"] = "novel"
    path = tmp_path / "cats.json"
    path.write_text(json.dumps(data))
    assert Vocabulary.from_coco_json(path).roles == ["rare", "base", "base", "novel"]
    assert Vocabulary.from_coco_json(path).subset(["novel", "rare"]).names == ["aerosol_can", "cat"]


def test_vocabulary_errors():
    with pytest.raises(ValueError, match=r"duplicate class names.*\['Cat', 'cat '\]"):
        Vocabulary(["Cat", "dog", "cat "], [1, 2, 3], ["base"] * 3, [["Cat"], ["dog"], ["cat "]])
    with pytest.raises(ValueError, match=r"\['red star', 'Red  Star'\]"):
        Vocabulary.from_names("red star, Red  Star")
    with pytest.raises(ValueError, match="empty class name at position"):
        Vocabulary.from_names("cat,,dog")
    with pytest.raises(ValueError, match="vocabulary: the vocabulary is empty"):
        Vocabulary([], [], [], [])
    with pytest.raises(ValueError, match=r"position\(s\) \[1\] \(category ids \[7\]\)"):
        Vocabulary(["a", " "], [3, 7], ["base", "base"], [["a"], ["b"]])
    with pytest.raises(ValueError, match="duplicate category ids"):
        Vocabulary(["a", "b"], [1, 1], ["base", "base"], [["a"], ["b"]])
    with pytest.raises(ValueError, match="unknown roles"):
        Vocabulary(["a"], [1], ["seen"], [["a"]])
    data = _coco_dict()
    with pytest.raises(ValueError, match="category id 1 .*'class1'.*no 'split' or 'frequency'"):
        Vocabulary.from_coco_json(data)
    with pytest.raises(ValueError, match=r"novel_ids lists ids \[1000\]"):
        Vocabulary.from_coco_json(data, novel_ids=[1000])
    data["categories"][0]["split"] = "unseen"
    with pytest.raises(ValueError, match="field 'split' is 'unseen'"):
        Vocabulary.from_coco_json(data)


def test_vocabulary_from_names_and_roundtrip():
    vocab = Vocabulary.from_names("cat, dog ,red star|crimson star")
    assert vocab.names == ["cat", "dog", "red star"]
    assert vocab.category_ids == [1, 2, 3]
    assert vocab.roles == ["novel"] * 3
    assert vocab.synonyms[2] == ["red star", "crimson star"]
    again = Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert again == vocab
    assert vocab.id_to_index == {1: 0, 2: 1, 3: 2}
    with pytest.raises(ValueError, match="no class has a role"):
        vocab.subset("base")


def test_lvis_frequency_groups():
    assert lvis_frequency_groups(_lvis_dict()["categories"]) == {"r": [1], "c": [2], "f": [3, 4]}
    assert lvis_frequency_groups(_lvis_dict()) == {"r": [1], "c": [2], "f": [3, 4]}
    cats = _lvis_dict()["categories"]
    del cats[2]["frequency"]
    with pytest.raises(ValueError, match="category id 3 .*'banana'"):
        lvis_frequency_groups(cats)


# ------------------------------------------------------------------------------ load_coco_json
@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("annotations"), "missing top-level key 'annotations'"),
        (
            lambda d: d["annotations"][1].update(image_id=99),
            "annotation id 11: field 'image_id' references unknown image 99",
        ),
        (
            lambda d: d["annotations"][2].update(category_id=12),
            "annotation id 12: field 'category_id' references unknown category 12",
        ),
        (
            lambda d: d["annotations"][0].update(bbox=[0, 0, 0, 5]),
            "annotation id 10: field 'bbox' is degenerate",
        ),
        (
            lambda d: d["annotations"][0].update(bbox=[0, 0, 5, -1]),
            "annotation id 10: field 'bbox' is degenerate",
        ),
        (
            lambda d: d["annotations"][3].update(bbox=[0, float("nan"), 5, 5]),
            "annotation id 13: field 'bbox' must be 4 finite",
        ),
        (
            lambda d: d["annotations"][3].update(area=float("nan")),
            "annotation id 13: field 'area' must be a finite",
        ),
        (
            lambda d: d["annotations"][3].pop("bbox"),
            r"annotations\[3\] \(id 13\) lacks field 'bbox'",
        ),
        (lambda d: d["annotations"][3].update(id=10), "duplicate annotation id 10"),
        (lambda d: d["images"].append({"id": 1}), "duplicate image id 1"),
    ],
)
def test_load_coco_json_errors_name_file_annotation_and_field(tmp_path, mutate, message):
    data = _coco_dict()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))  # NaN is written as the JSON literal NaN
    with pytest.raises(ValueError, match=message) as info:
        load_coco_json(path)
    assert str(path) in str(info.value)


def test_load_coco_json_ok_and_missing_file(tmp_path):
    data = load_coco_json(_coco_dict())
    assert len(data["annotations"]) == 4
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_coco_json(tmp_path / "nope.json")
    assert (
        load_coco_json({"images": [], "categories": []}, require_annotations=False)["annotations"]
        == []
    )


# ------------------------------------------------------------------------- make_base_only_json
def test_make_base_only_json_coco(tmp_path):
    src, dst = tmp_path / "train.json", tmp_path / "out" / "train_base.json"
    src.write_text(json.dumps(_coco_dict()))
    counts = make_base_only_json(
        src, dst, keep_category_ids=OV_COCO_BASE_IDS, novel_category_ids=OV_COCO_NOVEL_IDS
    )
    assert counts["annotations_kept"] == 2 and counts["annotations_dropped"] == 2
    assert (
        counts["categories_base"] == 48
        and counts["categories_novel"] == 17
        and counts["categories_excluded"] == 15
    )
    out = json.loads(dst.read_text())
    assert [a["id"] for a in out["annotations"]] == [10, 13]
    assert len(out["images"]) == 2 and len(out["categories"]) == 80
    splits = {c["id"]: c["split"] for c in out["categories"]}
    assert splits[1] == "base" and splits[5] == "novel" and splits[10] == "excluded"
    assert not list(dst.parent.glob("*.part"))
    # the written file reads back as the 65-class OV-COCO vocabulary
    vocab = Vocabulary.from_coco_json(dst)
    assert len(vocab) == 65 and sorted(vocab.ids_with_role("novel")) == list(OV_COCO_NOVEL_IDS)


def test_make_base_only_json_lvis_and_cli(tmp_path, capsys):
    src = tmp_path / "lvis_train.json"
    src.write_text(json.dumps(_lvis_dict()))
    counts = make_base_only_json(src, tmp_path / "norare.json")
    assert counts["annotations_kept"] == 3 and counts["annotations_dropped"] == 2
    assert {
        a["category_id"] for a in json.loads((tmp_path / "norare.json").read_text())["annotations"]
    } == {2, 3, 4}
    with pytest.raises(ValueError, match="not both"):
        make_base_only_json(
            src, tmp_path / "x.json", keep_category_ids=[1], drop_frequencies=("r",)
        )
    cli = runpy.run_path(str(REPO / "tools" / "make_ov_split.py"), run_name="make_ov_split")
    cli["main"](["lvis", str(src), str(tmp_path / "cli.json")])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["annotations_kept"] == 3
    assert (tmp_path / "cli.json").is_file()


# ------------------------------------------------------------- class names, fingerprints, logits
def test_validate_class_names_is_the_one_validator():
    assert validate_class_names(("cat", "red star"), field="f") == ["cat", "red star"]
    assert normalize_name("  Red   Star ") == "red star"
    with pytest.raises(
        ValueError, match=r"^DATASETS.TEST: duplicate class names .*\[\['Cat', ' cat'\]\]"
    ):
        validate_class_names(["Cat", "dog", " cat"], field="DATASETS.TEST")
    with pytest.raises(ValueError, match=r"^--vocabulary: the vocabulary is empty"):
        validate_class_names([], field="--vocabulary")
    with pytest.raises(ValueError, match=r"^f: empty class name at position\(s\) \[1, 2\]"):
        validate_class_names(["a", "", None], field="f")
    with pytest.raises(ValueError, match="got the string 'cat'"):
        validate_class_names("cat", field="f")


def test_names_and_synonyms_split_entries():
    names, synonyms = names_and_synonyms(["cat", ("dog", "puppy")])
    assert names == ["cat", "dog"] and synonyms == [["cat"], ["dog", "puppy"]]
    with pytest.raises(ValueError, match=r"heads: empty synonym list at position\(s\) \[0\]"):
        names_and_synonyms([[]], field="heads")


def test_teacher_fingerprint_check_names_both_sides_and_the_fix():
    check_teacher_fingerprint("abc", "abc", what="x", source="y")
    check_teacher_fingerprint(None, "abc", what="x", source="y")  # nothing expected: no check
    with pytest.raises(ValueError) as err:
        check_teacher_fingerprint(
            "abc",
            "xyz",
            what="embedding cache /c/store",
            source="text classifier /t.pt",
            fix="recompute the cache",
        )
    assert str(err.value) == (
        "teacher fingerprint mismatch: embedding cache /c/store has "
        "fingerprint 'xyz', text classifier /t.pt has 'abc' (a different "
        "teacher); recompute the cache"
    )


def test_cosine_logits_rows_and_pixels_agree():
    g = torch.Generator().manual_seed(0)
    classifier = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=1)
    rows = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=1)
    background = torch.nn.functional.normalize(torch.randn(8, generator=g), dim=0)
    logits = cosine_logits(rows, classifier, temperature=0.5, background=background)
    assert logits.shape == (6, 6)
    assert torch.allclose(logits[:, :5], rows @ classifier.t() / 0.5)
    assert torch.allclose(logits[:, 5], rows @ background / 0.5)  # background last
    pixels = rows.t().reshape(1, 8, 2, 3)  # pixel (y, x): row 3 y + x
    dense = dense_cosine_logits(pixels, classifier, temperature=0.5)
    assert dense.shape == (1, 5, 2, 3)
    assert torch.allclose(dense.flatten(2)[0].t(), logits[:, :5], atol=1e-6)
