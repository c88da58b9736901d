"""``distill.vocab.ClassifierFile``: the one text-classifier file of both hosts; both former on-disk
formats (written here the way the hosts wrote them) keep loading with the numbers they had."""

import pytest
import torch
import torch.nn.functional as F

from distill.vocab import CLASSIFIER_FORMAT, CLASSIFIER_VERSION, ClassifierFile


def _rows(n: int, d: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_detectors_legacy_file_loads_renormalized(tmp_path):
    path = tmp_path / "det.pt"
    raw = _rows(3) * 5  # detectors stored rows as given ...
    names = ["Cat", "dog", "red star"]
    torch.save({"names": names, "embeddings": raw, "teacher_fingerprint": "fp"}, path)
    table = ClassifierFile.load(path)
    assert torch.equal(table.embeddings, F.normalize(raw, dim=-1))  # ... normalized on load
    assert table.names == names and table.synonyms == [["Cat"], ["dog"], ["red star"]]
    assert (table.teacher_fingerprint, table.provenance, table.source) == ("fp", {}, str(path))
    assert torch.equal(table.select(["red  Star", "cat"]), table.embeddings[[2, 0]])
    with pytest.raises(KeyError, match=r"det.pt lacks 2 class names: \['cow', 'emu'\]"):
        table.select(["cow", "dog", "emu"])


def test_segmentors_legacy_file_loads_unchanged(tmp_path):
    path = tmp_path / "seg.pt"
    emb = F.normalize(_rows(2), dim=1)
    torch.save(
        {
            "names": ["cat", ["dog", "puppy"]],
            "embeddings": emb,
            "teacher_fingerprint": "fp",
            "templates": "simple",
        },
        path,
    )
    table = ClassifierFile.load(path)
    assert torch.equal(table.embeddings, emb)  # no renormalization: the same bits
    assert table.names == ["cat", "dog"] and table.synonyms == [["cat"], ["dog", "puppy"]]
    assert table.entries == ["cat", ["dog", "puppy"]]
    assert table.provenance == {"templates": "simple"}
    table.check_names(["cat", ("dog", "puppy")])
    with pytest.raises(
        ValueError,
        match=r"(?s)seg.pt holds 2 classes that do not match"
        r".*'dog', 'puppy'\], 'dog'",
    ):
        table.check_names(["cat", "dog"])
    torch.save(
        {
            "names": ["cat"],
            "embeddings": _rows(1) * 3,
            "teacher_fingerprint": "fp",
            "templates": None,
        },
        path,
    )
    with pytest.raises(ValueError, match="seg.pt: rows must be L2-normalized"):
        ClassifierFile.load(path)


def test_version_2_roundtrip_is_atomic_and_keeps_provenance(tmp_path):
    path = tmp_path / "sub" / "text.pt"
    raw = _rows(2, seed=3)
    provenance = {"templates": ["a {}."], "created_by": "test"}
    table = ClassifierFile.from_entries(
        ["sofa", ["tv", "television"]], raw, teacher_fingerprint="fp", provenance=provenance
    )
    assert table.save(path) == path and [p.name for p in path.parent.iterdir()] == ["text.pt"]
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == CLASSIFIER_FORMAT
    assert payload["version"] == CLASSIFIER_VERSION == 2
    again = ClassifierFile.load(path)
    assert torch.equal(again.embeddings, F.normalize(raw, dim=-1)) and again.embed_dim == 4
    assert again.names == ["sofa", "tv"] and again.synonyms == [["sofa"], ["tv", "television"]]
    assert again.provenance == provenance and len(again) == 2


def test_bad_files_name_the_file_and_how_to_regenerate(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt does not exist.*tools/train_net.py"):
        ClassifierFile.load(tmp_path / "nope.pt")
    path = tmp_path / "bad.pt"
    cases = [
        ({"names": ["a"], "embeddings": _rows(1)}, "must hold a dict with keys"),
        ({"format": CLASSIFIER_FORMAT, "version": 3}, "version 3"),
        ({"format": CLASSIFIER_FORMAT, "version": 2, "names": ["a"]}, r"lacks keys \['synonyms'"),
        ([1, 2], "holds a list, not a dict"),
    ]
    for payload, message in cases:
        torch.save(payload, path)
        with pytest.raises(ValueError, match=f"(?s)bad.pt.*{message}.*rerun the training tool"):
            ClassifierFile.load(path)
    path.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot read text classifier file .*bad.pt"):
        ClassifierFile.load(path)


def test_contents_are_validated():
    with pytest.raises(ValueError, match=r"duplicate class names .*\[\['cat', 'Cat '\]\]"):
        ClassifierFile.from_embeddings(["cat", "Cat "], _rows(2), teacher_fingerprint="fp")
    with pytest.raises(ValueError, match=r"2 names but embeddings of shape \[3, 4\]"):
        ClassifierFile.from_embeddings(["a", "b"], _rows(3), teacher_fingerprint="fp")
    with pytest.raises(ValueError, match="non-finite"):
        ClassifierFile.from_embeddings(
            ["a"], torch.full((1, 4), float("nan")), teacher_fingerprint="fp"
        )
    with pytest.raises(ValueError, match="L2-normalized"):
        ClassifierFile(["a"], _rows(1) * 2, "fp")
    with pytest.raises(ValueError, match="1 names but 2 synonym lists"):
        ClassifierFile.from_embeddings(
            ["a"], _rows(1), teacher_fingerprint="fp", synonyms=[["a"], ["b"]]
        )


def test_fingerprint_mismatch_names_the_file(tmp_path):
    table = ClassifierFile.from_embeddings(["a"], _rows(1), teacher_fingerprint="fp-1")
    table = ClassifierFile.load(table.save(tmp_path / "t.pt"))
    table.check_teacher("fp-1", source="the configured teacher")
    expected = (
        f"text classifier {tmp_path / 't.pt'} has fingerprint 'fp-1', the configured "
        f"teacher has 'fp-2' \\(a different teacher\\); delete it"
    )
    with pytest.raises(ValueError, match=expected):
        table.check_teacher("fp-2", source="the configured teacher", fix="delete it")
