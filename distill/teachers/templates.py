"""Prompt templates for text classifiers and the class-name -> prompt formatting rules.

``PROMPT_TEMPLATES["vild"]``: the 63 templates of ViLD's prompt ensemble (tensorflow/tpu, the ViLD demo
notebook, ``multiple_templates``). ViLD prefixes ``"This is "`` to every formatted prompt that starts
with "a" or "the" (its ``FLAGS.this_is``); the prefix is written into the templates here, so
formatting is a plain ``str.format``. ``{article}`` is "an" before a vowel, else "a".

``PROMPT_TEMPLATES["maskclip"]``: MaskCLIP's 85 templates (chongzhou96/MaskCLIP,
``tools/maskclip_utils/prompt_engineering.py``): OpenAI's 80 ImageNet templates + 5 scene templates.

``PROMPT_TEMPLATES["simple"]``: the single template ``"a photo of a {}."``.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

__all__ = ["PROMPT_TEMPLATES", "resolve_templates", "process_name", "article", "format_prompt"]

_VILD_RAW = [
    "There is {article} {} in the scene.",
    "There is the {} in the scene.",
    "a photo of {article} {} in the scene.",
    "a photo of the {} in the scene.",
    "a photo of one {} in the scene.",
    "itap of {article} {}.",
    "itap of my {}.",
    "itap of the {}.",
    "a photo of {article} {}.",
    "a photo of my {}.",
    "a photo of the {}.",
    "a photo of one {}.",
    "a photo of many {}.",
    "a good photo of {article} {}.",
    "a good photo of the {}.",
    "a bad photo of {article} {}.",
    "a bad photo of the {}.",
    "a photo of a nice {}.",
    "a photo of the nice {}.",
    "a photo of a cool {}.",
    "a photo of the cool {}.",
    "a photo of a weird {}.",
    "a photo of the weird {}.",
    "a photo of a small {}.",
    "a photo of the small {}.",
    "a photo of a large {}.",
    "a photo of the large {}.",
    "a photo of a clean {}.",
    "a photo of the clean {}.",
    "a photo of a dirty {}.",
    "a photo of the dirty {}.",
    "a bright photo of {article} {}.",
    "a bright photo of the {}.",
    "a dark photo of {article} {}.",
    "a dark photo of the {}.",
    "a photo of a hard to see {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of {article} {}.",
    "a low resolution photo of the {}.",
    "a cropped photo of {article} {}.",
    "a cropped photo of the {}.",
    "a close-up photo of {article} {}.",
    "a close-up photo of the {}.",
    "a jpeg corrupted photo of {article} {}.",
    "a jpeg corrupted photo of the {}.",
    "a blurry photo of {article} {}.",
    "a blurry photo of the {}.",
    "a pixelated photo of {article} {}.",
    "a pixelated photo of the {}.",
    "a black and white photo of the {}.",
    "a black and white photo of {article} {}.",
    "a plastic {}.",
    "the plastic {}.",
    "a toy {}.",
    "the toy {}.",
    "a plushie {}.",
    "the plushie {}.",
    "a cartoon {}.",
    "the cartoon {}.",
    "an embroidered {}.",
    "the embroidered {}.",
    "a painting of the {}.",
    "a painting of a {}.",
]

_MASKCLIP = [
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
    "there is a {} in the scene.",
    "there is the {} in the scene.",
    "this is a {} in the scene.",
    "this is the {} in the scene.",
    "this is one {} in the scene.",
]


def _vild_this_is(template: str) -> str:
    # ViLD: 'This is ' + text if text.startswith('a') or text.startswith('the') (on the formatted text;
    # every template's first word is fixed, so applying it to the template is equivalent).
    return "This is " + template if template.startswith(("a", "the")) else template


PROMPT_TEMPLATES: dict[str, list[str]] = {
    "vild": [_vild_this_is(t) for t in _VILD_RAW],
    "maskclip": list(_MASKCLIP),
    "simple": ["a photo of a {}."],
}


def _check_template(template: str) -> None:
    fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    if fields.count("") != 1 or any(f not in ("", "article") for f in fields):
        raise ValueError(
            f"prompt template {template!r} must contain exactly one '{{}}' (the class name) "
            f"and optionally '{{article}}'; got fields {fields}"
        )


def resolve_templates(templates: str | Sequence[str]) -> list[str]:
    """A template-set name from ``PROMPT_TEMPLATES`` or an explicit list -> validated list of templates."""
    if isinstance(templates, str):
        if templates not in PROMPT_TEMPLATES:
            raise ValueError(
                f"unknown prompt template set {templates!r}; known: {sorted(PROMPT_TEMPLATES)} "
                f"(or pass a list of templates containing '{{}}')"
            )
        out = list(PROMPT_TEMPLATES[templates])
    else:
        out = [str(t) for t in templates]
    if not out:
        raise ValueError("empty prompt template list")
    for t in out:
        _check_template(t)
    return out


def process_name(name: str) -> str:
    """ViLD's class-name cleaning: '_' -> ' ', '/' -> ' or ', lower case, trailing '.' removed."""
    out = " ".join(name.replace("_", " ").replace("/", " or ").lower().split()).rstrip(".")
    if not out:
        raise ValueError(f"empty class name after cleaning: {name!r}")
    return out


def article(name: str) -> str:
    """'an' before a vowel, else 'a' (ViLD's rule)."""
    return "an" if name[:1] in "aeiou" and name else "a"


def format_prompt(template: str, name: str) -> str:
    """Fill a (validated) template with an already cleaned class name."""
    return template.format(name, article=article(name))
