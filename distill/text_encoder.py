"""A frozen CLIP text transformer that reads *word embeddings* instead of token ids (BARON's pseudo words).

Framework-free and teacher-free (pure torch): students build it from a file written by the tool side
(``distill.teachers.text_tower.export_text_encoder``), so they never import ``open_clip``.

Sequence layout (CLIP's): ``[sot, w_1 .. w_L, eot, pad ...]`` with the learned positional embedding
added, a causal transformer, the final layer norm, the features at the ``eot`` position, the text
projection, L2 normalization. Feeding the token embeddings of a tokenized prompt reproduces the
teacher's ``encode_text`` (tested).

Output spaces (``TEXT_SPACES``): ``"projected"`` is the above (CLIP's joint space,
``embed_dim``); ``"attn12"`` is the residual stream at the ``eot`` position after the last
transformer block, WITHOUT the final layer norm and WITHOUT the text projection, L2-normalized
(``width``): BARON's OV-COCO classifier space (wusize/ovdet@d74a20c ``use_attn12_output=True``:
``encode_pseudo_text_endk(stepk=12)`` in ``ovdet/models/vlms/clip/text_encoder.py``, the 12 blocks
of CLIP's text tower, i.e. all of them).

Word-token paths of :meth:`PseudoTextEncoder.forward_tokens` (``WORD_TOKEN_PATHS``): ``"causal"`` is
every position's ordinary output (last block, ``ln_final``, projection); ``"eot_value"`` is BARON's
single-region path (wusize/ovdet@d74a20c ``ovdet/models/vlms/clip/common.py``
``ResidualAttentionBlock.forward(return_tokens=True)``, called by ``text_encoder.py``
``encode_pseudo_text(return_word_tokens=True)``): in the LAST block, token ``i`` is the eot
position's residual stream plus ``out_proj(v_proj(ln_1(x_i)))`` (no attention mixing), then
``+ mlp(ln_2(.))``, ``ln_final`` and the projection.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from distill.utils import atomic_path

__all__ = [
    "TEXT_SPACES",
    "WORD_TOKEN_PATHS",
    "TextEncoderConfig",
    "PseudoTextEncoder",
    "check_text_space",
    "save_text_encoder",
    "load_text_encoder",
]

TEXT_SPACES = ("projected", "attn12")
"""Output spaces of :class:`PseudoTextEncoder` (see the module docstring)."""

WORD_TOKEN_PATHS = ("causal", "eot_value")
"""Word-token paths of :meth:`PseudoTextEncoder.forward_tokens` (see the module docstring)."""


def check_text_space(space: str, *, field: str = "text space") -> str:
    """``space`` if it is one of :data:`TEXT_SPACES`, else ``ValueError`` naming ``field``."""
    if space not in TEXT_SPACES:
        raise ValueError(f"{field} must be one of {list(TEXT_SPACES)}, got {space!r}")
    return space


@dataclass(frozen=True)
class TextEncoderConfig:
    """Shape of a CLIP text tower: ``width`` (word dim), ``layers``, ``heads``, ``context_length``,
    ``embed_dim`` (output), ``mlp_ratio``, ``quick_gelu`` (OpenAI CLIP's activation), ``layer_scale``."""

    width: int
    layers: int
    heads: int
    context_length: int
    embed_dim: int
    mlp_ratio: float = 4.0
    quick_gelu: bool = False
    layer_scale: bool = False


class _QuickGELU(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class _LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class _Block(nn.Module):
    """Pre-norm residual block: ``x + attn(ln_1(x))``, ``x + mlp(ln_2(x))`` (CLIP's text block)."""

    def __init__(self, cfg: TextEncoderConfig) -> None:
        super().__init__()
        hidden = int(cfg.width * cfg.mlp_ratio)
        self.ln_1 = nn.LayerNorm(cfg.width)
        self.attn = nn.MultiheadAttention(cfg.width, cfg.heads, batch_first=True)
        self.ls_1 = _LayerScale(cfg.width) if cfg.layer_scale else nn.Identity()
        self.ln_2 = nn.LayerNorm(cfg.width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(cfg.width, hidden))
        self.mlp.add_module("gelu", _QuickGELU() if cfg.quick_gelu else nn.GELU())
        self.mlp.add_module("c_proj", nn.Linear(hidden, cfg.width))
        self.ls_2 = _LayerScale(cfg.width) if cfg.layer_scale else nn.Identity()

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.ln_1(x)
        x = x + self.ls_1(self.attn(h, h, h, need_weights=False, attn_mask=mask)[0])
        return x + self.ls_2(self.mlp(self.ln_2(x)))


def _eot_value_tokens(block: _Block, x: Tensor, eot: Tensor) -> Tensor:
    """``[B, T, width]``: ovdet's ``return_tokens`` path of ``block`` on its input ``x``
    ``[B, T, width]``: ``x[eot] + out_proj(v_proj(ln_1(x_i)))``, then ``+ mlp(ln_2(.))``."""
    attn = block.attn
    width = attn.embed_dim
    weight = attn.in_proj_weight[2 * width :]
    bias = attn.in_proj_bias[2 * width :] if attn.in_proj_bias is not None else None
    value = attn.out_proj(F.linear(block.ln_1(x), weight, bias))
    residual = x[torch.arange(x.shape[0], device=x.device), eot][:, None]
    tokens = residual + block.ls_1(value)
    return tokens + block.ls_2(block.mlp(block.ln_2(tokens)))


class PseudoTextEncoder(nn.Module):
    """Frozen CLIP text tower over word embeddings.

    ``forward(words [B, L, width], *, valid [B, L] bool | None, space) -> [B, output_dim(space)]``
    normalized text embeddings (``space`` one of :data:`TEXT_SPACES`, default ``"projected"``).
    Row ``b``'s sequence is ``[sot, words[b][valid[b]], eot]``: dropped (invalid) words are removed
    and the rest packed in order, so ``valid`` implements word dropout and variable lengths.
    ``forward_tokens`` also returns the projected tokens of the words (``token_path``).

    Parameters never require gradients and the module stays in eval mode; gradients flow to ``words``.
    """

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        if config.width % config.heads:
            raise ValueError(
                f"text encoder width {config.width} is not divisible by heads {config.heads}"
            )
        self.config = config
        self.sot_embedding = nn.Parameter(torch.zeros(config.width))
        self.eot_embedding = nn.Parameter(torch.zeros(config.width))
        self.positional_embedding = nn.Parameter(torch.zeros(config.context_length, config.width))
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.layers))
        self.ln_final = nn.LayerNorm(config.width)
        self.text_projection = nn.Parameter(torch.zeros(config.width, config.embed_dim))
        self.requires_grad_(False)
        self.eval()

    @property
    def width(self) -> int:
        return self.config.width

    @property
    def max_words(self) -> int:
        """Most words one sequence can hold (context length minus sot and eot)."""
        return self.config.context_length - 2

    def train(self, mode: bool = True) -> PseudoTextEncoder:  # noqa: ARG002 - frozen
        return super().train(False)

    def _pack(self, words: Tensor, valid: Tensor | None) -> tuple[Tensor, Tensor]:
        """``[B, T, width]`` sequences (sot, kept words, eot, zero padding) and the eot index ``[B]``."""
        if words.dim() != 3 or words.shape[2] != self.width:
            raise ValueError(f"words must be [B, L, {self.width}], got {tuple(words.shape)}")
        if not torch.isfinite(words).all():
            raise ValueError("words contain NaN or inf values")
        b, length, _ = words.shape
        if (
            valid is None
        ):  # every word kept: a static layout (export-friendly, no data-dependent indexing)
            if length > self.max_words:
                raise ValueError(
                    f"a sequence of {length} words does not fit the text encoder's context length "
                    f"{self.config.context_length} (at most {self.max_words} words)"
                )
            ends = [
                self.sot_embedding.to(words).expand(b, 1, -1),
                words,
                self.eot_embedding.to(words).expand(b, 1, -1),
            ]
            return torch.cat(ends, dim=1), torch.full(
                (b,), length + 1, dtype=torch.long, device=words.device
            )
        if valid.shape != (b, length) or valid.dtype != torch.bool:
            raise ValueError(
                f"valid must be a bool tensor [{b}, {length}], got {valid.dtype} {tuple(valid.shape)}"
            )
        counts = valid.sum(dim=1)
        if b and length > self.max_words and int(counts.max()) > self.max_words:
            raise ValueError(
                f"a sequence of {int(counts.max())} words does not fit the text encoder's context "
                f"length {self.config.context_length} (at most {self.max_words} words)"
            )
        total = min(length, self.max_words) + 2
        # position of each kept word: 1 + its rank among the kept words of its row
        position = torch.cumsum(valid.long(), dim=1)
        seq = words.new_zeros(b, total, self.width)
        rows, cols = valid.nonzero(as_tuple=True)
        seq = seq.index_put((rows, position[rows, cols]), words[rows, cols])
        seq[:, 0] = self.sot_embedding.to(seq)
        eot = counts + 1
        seq[torch.arange(b, device=seq.device), eot] = self.eot_embedding.to(seq)
        return seq, eot

    def output_dim(self, space: str = "projected") -> int:
        """Size of the embeddings of ``space``: ``embed_dim`` (projected) or ``width`` (attn12)."""
        return self.config.embed_dim if check_text_space(space) == "projected" else self.width

    def _residual_stream(
        self, words: Tensor, valid: Tensor | None, *, eot_value_tokens: bool = False
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """(``[B, T, width]`` output of the last block, before ``ln_final``; eot index ``[B]``;
        with ``eot_value_tokens`` the last block's eot-residual value-path tokens ``[B, T, width]``
        (module docstring), else None)."""
        seq, eot = self._pack(words, valid)
        total = seq.shape[1]
        x = seq + self.positional_embedding[:total].to(seq)
        mask = torch.full((total, total), float("-inf"), device=x.device, dtype=x.dtype).triu_(1)
        for block in self.blocks[:-1]:
            x = block(x, mask)
        last = self.blocks[-1]
        tokens = _eot_value_tokens(last, x, eot) if eot_value_tokens else None
        return last(x, mask), eot, tokens

    def forward_tokens(
        self, words: Tensor, *, valid: Tensor | None = None, token_path: str = "causal"
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(text [B, E], word_tokens [B, T, E], positions [B, L])``, all in the projected space.

        ``text`` is normalized; ``word_tokens`` (NOT normalized) are the projected tokens of the
        whole packed sequence along ``token_path`` (:data:`WORD_TOKEN_PATHS`, module docstring);
        ``positions[b, l]`` is the index in it of word ``l`` (valid words only; -1 for dropped ones).
        """
        if token_path not in WORD_TOKEN_PATHS:
            raise ValueError(
                f"token_path must be one of {list(WORD_TOKEN_PATHS)}, got {token_path!r}"
            )
        x, eot, value_tokens = self._residual_stream(
            words, valid, eot_value_tokens=token_path == "eot_value"
        )
        proj = self.text_projection.to(x)
        x = self.ln_final(x) @ proj
        text = F.normalize(x[torch.arange(x.shape[0], device=x.device), eot], dim=-1)
        tokens = x if value_tokens is None else self.ln_final(value_tokens) @ proj
        kept = (
            valid
            if valid is not None
            else torch.ones(words.shape[:2], dtype=torch.bool, device=words.device)
        )
        positions = torch.where(
            kept, torch.cumsum(kept.long(), dim=1), torch.full_like(kept, -1, dtype=torch.long)
        )
        return text, tokens, positions

    def forward(
        self, words: Tensor, *, valid: Tensor | None = None, space: str = "projected"
    ) -> Tensor:
        if check_text_space(space) == "projected":
            return self.forward_tokens(words, valid=valid)[0]
        x, eot, _ = self._residual_stream(words, valid)
        return F.normalize(x[torch.arange(x.shape[0], device=x.device), eot], dim=-1)


def save_text_encoder(
    path: str | os.PathLike, encoder: PseudoTextEncoder, *, teacher_fingerprint: str
) -> Path:
    """Write ``{config, state_dict, teacher_fingerprint}`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        torch.save(
            {
                "config": asdict(encoder.config),
                "state_dict": encoder.state_dict(),
                "teacher_fingerprint": str(teacher_fingerprint),
            },
            tmp,
        )
    return Path(path)


def load_text_encoder(path: str | os.PathLike) -> tuple[PseudoTextEncoder, str]:
    """``(encoder, teacher_fingerprint)`` from a file of :func:`save_text_encoder` (strict load)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"text encoder file {path} does not exist (MODEL.BARON.TEXT_ENCODER); "
            f"tools/train_net.py writes it from MODEL.VILD.TEACHER"
        )
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or any(
        k not in data for k in ("config", "state_dict", "teacher_fingerprint")
    ):
        raise ValueError(
            f"text encoder file {path} must hold a dict with keys config, state_dict, "
            f"teacher_fingerprint"
        )
    encoder = PseudoTextEncoder(TextEncoderConfig(**data["config"]))
    encoder.load_state_dict(data["state_dict"], strict=True)
    encoder.requires_grad_(False)
    return encoder, str(data["teacher_fingerprint"])
