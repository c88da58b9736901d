"""Export a teacher's text tower as a :class:`distill.text_encoder.PseudoTextEncoder` (BARON's frozen encoder).

Only open_clip's standard CLIP text tower is supported (causal mask, argmax/eot pooling, plain
residual blocks); anything else raises ``ValueError`` naming the unsupported part.

:func:`encode_texts` embeds prompts in one of the encoder's output spaces
(``distill.text_encoder.TEXT_SPACES``) by feeding their token embeddings through the exported
encoder, so class embeddings and the student's pseudo-word embeddings come from the same code
(BARON's ``attn12`` classifier: ovdet's ``tools/hand_craft_prompt.py`` / ``encode_text_endk``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from distill.text_encoder import PseudoTextEncoder, TextEncoderConfig, check_text_space

__all__ = ["export_text_encoder", "encode_texts"]


def _text_model(teacher):
    model = getattr(teacher, "model", None)
    needed = (
        "token_embedding",
        "positional_embedding",
        "transformer",
        "ln_final",
        "text_projection",
    )
    if model is None or any(not hasattr(model, k) for k in needed):
        raise ValueError(
            f"{type(teacher).__name__}: only open_clip CLIP models with a built-in text tower can be "
            f"exported as a pseudo-word text encoder (needs model.{', model.'.join(needed)})"
        )
    pool = getattr(model, "text_pool_type", "argmax")
    if pool != "argmax" or getattr(model, "attn_mask", None) is None:
        raise ValueError(
            f"text tower with pool type {pool!r} / no causal mask is not supported (CLIP's is argmax, "
            f"causal)"
        )
    if not isinstance(model.text_projection, Tensor):
        raise ValueError("text tower with a Linear text projection is not supported")
    return model


@torch.no_grad()
def export_text_encoder(teacher) -> PseudoTextEncoder:
    """A frozen CPU copy of ``teacher``'s text tower reading word embeddings (see ``PseudoTextEncoder``)."""
    model = _text_model(teacher)
    blocks = list(model.transformer.resblocks)
    first = blocks[0]
    for name in ("ln_1_kv", "ln_attn", "ln_inner"):
        if any(hasattr(b, name) for b in blocks):
            raise ValueError(f"text transformer blocks with {name} are not supported")
    width = int(model.positional_embedding.shape[1])
    config = TextEncoderConfig(
        width=width,
        layers=len(blocks),
        heads=int(first.attn.num_heads),
        context_length=int(model.positional_embedding.shape[0]),
        embed_dim=int(model.text_projection.shape[1]),
        mlp_ratio=first.mlp.c_fc.out_features / width,
        quick_gelu=type(first.mlp.gelu).__name__ == "QuickGELU",
        layer_scale=hasattr(first.ls_1, "gamma"),
    )
    encoder = PseudoTextEncoder(config)
    state = {
        f"blocks.{k[len('transformer.resblocks.') :]}": v
        for k, v in model.state_dict().items()
        if k.startswith("transformer.resblocks.")
    }
    state.update({f"ln_final.{k}": v for k, v in model.ln_final.state_dict().items()})
    state["positional_embedding"] = model.positional_embedding
    state["text_projection"] = model.text_projection
    tokenizer = teacher.tokenizer
    ids = torch.tensor(
        [tokenizer.sot_token_id, tokenizer.eot_token_id], device=model.token_embedding.weight.device
    )
    sot, eot = model.token_embedding(ids)
    state["sot_embedding"], state["eot_embedding"] = sot, eot
    encoder.load_state_dict({k: v.detach().float().cpu() for k, v in state.items()}, strict=True)
    return encoder


@torch.no_grad()
def encode_texts(
    teacher, texts: list[str], *, space: str = "projected", batch_size: int = 1024
) -> Tensor:
    """``[N, D]`` normalized float32 embeddings of ``texts`` on ``teacher.device`` in ``space``.

    ``"projected"`` is ``teacher.encode_text``; other spaces run the exported text encoder
    (:func:`export_text_encoder`) on each prompt's token embeddings (between sot and eot). Raises
    ``TextTooLongError`` (from ``teacher.tokenize``) for a text longer than the context.
    """
    if check_text_space(space) == "projected":
        return teacher.encode_text(texts).float()
    model = _text_model(teacher)
    device = model.token_embedding.weight.device
    encoder = export_text_encoder(teacher).to(device)
    out = []
    for start in range(0, len(texts), batch_size):
        ids = teacher.tokenize(list(texts[start : start + batch_size])).to(device)
        lengths = ids.argmax(dim=1) - 1  # argmax: eot (the model's own pooling); minus sot
        words = model.token_embedding(ids[:, 1 : 1 + int(lengths.max())]).float()
        valid = torch.arange(words.shape[1], device=device)[None] < lengths[:, None]
        out.append(encoder(words, valid=valid, space=space))
    if not out:
        return torch.zeros(0, encoder.output_dim(space), device=device)
    return torch.cat(out).to(teacher.device)
