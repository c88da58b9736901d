"""BARON's pseudo-word text encoder: an exported teacher text tower fed with real token embeddings
reproduces the teacher's ``encode_text``; word dropout packs the kept words; file round trip."""

import json

import pytest
import torch

from distill.teachers import ClipTeacher
from distill.teachers.text_tower import export_text_encoder
from distill.text_encoder import (
    PseudoTextEncoder,
    TextEncoderConfig,
    load_text_encoder,
    save_text_encoder,
)

TEXTS = ["a photo of a cat.", "red box", "a small blue thing on the left"]


@pytest.fixture(scope="module", params=[False, True], ids=["gelu", "quick_gelu"])
def teacher(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("baron_text")
    cfg = {
        "embed_dim": 24,
        "quick_gelu": request.param,
        "vision_cfg": {
            "image_size": 32,
            "layers": 1,
            "width": 32,
            "patch_size": 16,
            "head_width": 16,
        },
        "text_cfg": {
            "width": 32,
            "heads": 4,
            "layers": 2,
            "context_length": 16,
            "vocab_size": 49408,
        },
    }
    name = f"ovd-baron-text-{int(request.param)}"
    (root / "cfg.json").write_text(json.dumps(cfg))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OVDISTILL_CACHE", str(root / "cache"))
        torch.manual_seed(0)
        yield ClipTeacher(name, model_config=root / "cfg.json", allow_random_init=True)


@torch.no_grad()
def prompt_word_embeddings(teacher: ClipTeacher, texts: list[str]) -> list[torch.Tensor]:
    """Per text, the token embeddings ``[L_i, width]`` of its words (without sot / eot)."""
    model = teacher.model
    tokens = teacher.tokenize(list(texts)).to(model.token_embedding.weight.device)
    ends = [int(row.argmax()) for row in tokens]  # eot has the largest id
    return [model.token_embedding(row[1:end]).float().cpu() for row, end in zip(tokens, ends)]


def test_pseudo_words_reproduce_the_teacher_text_encoder(teacher):
    encoder = export_text_encoder(teacher)
    assert encoder.config.quick_gelu == ("1" in teacher.model_name)
    assert not any(p.requires_grad for p in encoder.parameters())
    expected = teacher.encode_text(TEXTS)
    words = prompt_word_embeddings(teacher, TEXTS)
    for text, w, e in zip(TEXTS, words, expected):
        got = encoder(w[None])[0]
        torch.testing.assert_close(got, e, atol=1e-5, rtol=1e-5, msg=text)
    # padded batch with a validity mask == one by one
    longest = max(len(w) for w in words)
    batch = torch.zeros(len(words), longest, encoder.width)
    valid = torch.zeros(len(words), longest, dtype=torch.bool)
    for i, w in enumerate(words):
        batch[i, : len(w)], valid[i, : len(w)] = w, True
    torch.testing.assert_close(encoder(batch, valid=valid), expected, atol=1e-5, rtol=1e-5)


def test_dropped_words_are_removed_and_gradients_reach_words(teacher, tmp_path):
    encoder = export_text_encoder(teacher)
    words = torch.randn(2, 5, encoder.width, requires_grad=True)
    valid = torch.tensor([[True, False, True, True, False], [True] * 5])
    text, tokens, positions = encoder.forward_tokens(words, valid=valid)
    torch.testing.assert_close(text[0], encoder(words[0, [0, 2, 3]][None])[0])
    assert positions[0].tolist() == [1, -1, 2, 3, -1] and positions[1].tolist() == [1, 2, 3, 4, 5]
    assert tokens.shape == (2, 7, 24)
    text.sum().backward()
    assert words.grad[0, 1].abs().sum() == 0 and words.grad[0, 0].abs().sum() > 0
    path = save_text_encoder(tmp_path / "enc.pt", encoder, teacher_fingerprint=teacher.fingerprint)
    again, fingerprint = load_text_encoder(path)
    assert fingerprint == teacher.fingerprint
    torch.testing.assert_close(again(words.detach(), valid=valid), text.detach())


def test_bad_inputs_name_the_field():
    encoder = PseudoTextEncoder(
        TextEncoderConfig(width=8, layers=1, heads=2, context_length=6, embed_dim=4)
    )
    with pytest.raises(ValueError, match=r"words must be \[B, L, 8\]"):
        encoder(torch.zeros(2, 3, 7))
    with pytest.raises(ValueError, match="NaN"):
        encoder(torch.full((1, 2, 8), float("nan")))
    with pytest.raises(ValueError, match="context length 6"):
        encoder(torch.zeros(1, 5, 8))
    with pytest.raises(ValueError, match="valid must be"):
        encoder(torch.zeros(1, 2, 8), valid=torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(FileNotFoundError, match="MODEL.BARON.TEXT_ENCODER"):
        load_text_encoder("/nonexistent/enc.pt")
