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


@torch.no_grad()
def last_block_eot_by_hand(teacher: ClipTeacher, texts: list[str]) -> torch.Tensor:
    """open_clip's own blocks run one by one: the eot token after the last block, normalized
    (no ln_final, no text projection): ovdet's ``encode_text_endk(stepk=12)`` for a full tower."""
    model = teacher.model
    ids = teacher.tokenize(list(texts))
    x = model.token_embedding(ids) + model.positional_embedding
    assert model.transformer.batch_first
    for block in model.transformer.resblocks:
        x = block(x, attn_mask=model.attn_mask)
    return torch.nn.functional.normalize(x[torch.arange(len(texts)), ids.argmax(dim=1)], dim=-1)


def test_attn12_space_is_the_last_block_eot_before_ln_final(teacher):
    from distill.teachers.text_tower import encode_texts

    encoder = export_text_encoder(teacher)
    expected = last_block_eot_by_hand(teacher, TEXTS)
    assert expected.shape == (len(TEXTS), encoder.width) and encoder.output_dim("attn12") == 32
    for text, w, e in zip(TEXTS, prompt_word_embeddings(teacher, TEXTS), expected):
        got = encoder(w[None], space="attn12")[0]
        torch.testing.assert_close(got, e, atol=1e-5, rtol=1e-5, msg=text)
    # prompts of different lengths in one padded batch (the class-embedding path)
    torch.testing.assert_close(
        encode_texts(teacher, TEXTS, space="attn12"), expected, atol=1e-5, rtol=1e-5
    )
    # the projected space (the old classifier space) is a different tensor: ln_final + projection
    projected = encoder(prompt_word_embeddings(teacher, TEXTS)[0][None])
    assert projected.shape == (1, 24) and encoder.output_dim() == 24
    with pytest.raises(ValueError, match="text space must be one of"):
        encoder(prompt_word_embeddings(teacher, TEXTS)[0][None], space="attn11")


def test_attn12_text_classifier_averages_normalized_prompts_and_records_its_space(teacher):
    from distill.teachers.text import (
        compute_text_classifier,
        text_classifier_cache_path,
        text_classifier_in_space,
    )
    from distill.vocab import ClassifierFile

    templates = ["a photo of a {}.", "{}"]
    names = [["cat"], ["red box", "crate"]]
    got = compute_text_classifier(teacher, names, templates, space="attn12")
    prompts = [
        ["a photo of a cat.", "cat"],
        ["a photo of a red box.", "red box", "a photo of a crate.", "crate"],
    ]
    hand = torch.stack([last_block_eot_by_hand(teacher, p).sum(0) for p in prompts])
    torch.testing.assert_close(got, torch.nn.functional.normalize(hand, dim=-1), atol=1e-5, rtol=0)
    cached = text_classifier_in_space(teacher, names, templates=templates, space="attn12")
    torch.testing.assert_close(cached, got)
    paths = {
        s: text_classifier_cache_path(teacher.fingerprint, names, templates, space=s)
        for s in ("projected", "attn12")
    }
    assert paths["projected"] != paths["attn12"]
    table = ClassifierFile.from_embeddings(
        ["cat", "red box"], got, teacher_fingerprint="t", provenance={"text_space": "attn12"}
    )
    assert table.text_space == "attn12"
    table.check_text_space("attn12", source="test")
    with pytest.raises(ValueError, match="holds 'attn12' text embeddings"):
        table.check_text_space("projected", source="a ViLD model")
    old = ClassifierFile.from_embeddings(["cat"], got[:1], teacher_fingerprint="t")
    assert old.text_space == "projected"  # files without the key: CLIP's joint space


def test_configs_select_the_classifier_space():
    from detectors.config import classifier_text_space, load_config

    for name in ("baron_r50.yaml", "baron_ensemble_r50.yaml", "toy/baron.yaml"):
        cfg = load_config(name)
        assert cfg.MODEL.BARON.TEXT_SPACE == "attn12" and classifier_text_space(cfg) == "attn12"
    # ovdet's OV-LVIS configs: use_attn12_output=False; ViLD stays projected
    for name in ("baron_r50_lvis.yaml", "vild_r50.yaml", "toy/vild.yaml"):
        assert classifier_text_space(load_config(name)) == "projected", name


def test_baron_predictor_classifies_in_the_attn12_space():
    """The classifier uses the attn12 output (width-sized); the bag losses keep the projected one."""
    pytest.importorskip("detectron2")
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.box_regression import Box2BoxTransform

    from detectors.modeling import BaronOutputLayers

    torch.manual_seed(0)
    encoder = PseudoTextEncoder(
        TextEncoderConfig(width=8, layers=2, heads=2, context_length=6, embed_dim=4)
    )
    for p in encoder.parameters():
        p.data.normal_()
    kwargs = dict(
        box2box_transform=Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0)),
        class_names=["a", "b"],
        text_encoder=encoder,
        num_words=2,
    )
    classes = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    predictor = BaronOutputLayers(
        ShapeSpec(channels=3), class_embeddings=classes, text_space="attn12", **kwargs
    ).eval()
    x = torch.randn(5, 3)
    expected = encoder(predictor.words(x), space="attn12")
    torch.testing.assert_close(predictor.embed(x), expected)
    assert expected.shape == (5, 8)
    with pytest.raises(ValueError, match=r"output size 4 \(projected\) != text embeddings size 8"):
        BaronOutputLayers(ShapeSpec(channels=3), class_embeddings=classes, **kwargs)


@torch.no_grad()
def eot_value_tokens_by_hand(teacher: ClipTeacher, text: str) -> torch.Tensor:
    """open_clip's own text blocks run one by one, then ovdet's ``return_tokens`` path of the last
    block (wusize/ovdet@d74a20c ``vlms/clip/common.py``): every token is the eot residual plus
    ``out_proj(v_proj(ln_1(x_i)))``, plus ``mlp(ln_2(.))``; ``ln_final``, projection. ``[L, E]``
    for the L positions of the tokenized text (not normalized)."""
    model = teacher.model
    ids = teacher.tokenize([text])
    eot = int(ids[0].argmax())
    x = model.token_embedding(ids) + model.positional_embedding
    blocks = list(model.transformer.resblocks)
    for block in blocks[:-1]:
        x = block(x, attn_mask=model.attn_mask)
    last = blocks[-1]
    width = x.shape[-1]
    w_v, b_v = last.attn.in_proj_weight[2 * width :], last.attn.in_proj_bias[2 * width :]
    value = last.ln_1(x[0]) @ w_v.T + b_v
    value = value @ last.attn.out_proj.weight.T + last.attn.out_proj.bias
    tokens = x[0, eot] + value
    tokens = tokens + last.mlp(last.ln_2(tokens))
    return (model.ln_final(tokens) @ model.text_projection)[: eot + 1]


def test_eot_value_word_tokens_match_ovdet_return_tokens(teacher):
    """BARON's single-region word tokens (``token_path="eot_value"``) against a hand run of the
    tower; the old causal tokens are a different tensor."""
    encoder = export_text_encoder(teacher)
    for text, words in zip(TEXTS, prompt_word_embeddings(teacher, TEXTS)):
        expected = eot_value_tokens_by_hand(teacher, text)  # [L + 2, E]: sot, words, eot
        text_emb, tokens, positions = encoder.forward_tokens(words[None], token_path="eot_value")
        got = tokens[0, positions[0]]
        torch.testing.assert_close(got, expected[1:-1], atol=1e-5, rtol=1e-5, msg=text)
        torch.testing.assert_close(text_emb, encoder(words[None]))  # the text output is unchanged
        causal = encoder.forward_tokens(words[None])[1][0, positions[0]]
        assert not torch.allclose(causal, got, atol=1e-3), text
    # dropped words are removed before the tower: the packed row equals the kept words alone
    words = prompt_word_embeddings(teacher, TEXTS)[2]
    valid = torch.ones(1, words.shape[0], dtype=torch.bool)
    valid[0, 1] = False
    _, tokens, positions = encoder.forward_tokens(words[None], valid=valid, token_path="eot_value")
    _, alone, _ = encoder.forward_tokens(words[None, valid[0]], token_path="eot_value")
    torch.testing.assert_close(tokens[0, positions[0, valid[0]]], alone[0, 1:-1])
    with pytest.raises(ValueError, match="token_path must be one of"):
        encoder.forward_tokens(words[None], token_path="value")
