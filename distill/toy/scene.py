"""Procedural scenes: textured, cluttered backgrounds with occluding coloured glyphs.

All randomness comes from the ``numpy.random.Generator`` passed in, so a scene is a pure function of it.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .shapes import CATEGORIES, COLORS, Category, shape_mask

_COLOR_NAMES = tuple(COLORS)


@dataclass(frozen=True)
class SceneObject:
    """A placed glyph. ``mask`` is its VISIBLE (after occlusion) region, bool [H, W]."""

    category: Category
    color: str
    mask: np.ndarray
    full_area: int

    @property
    def box_xyxy(self) -> tuple[int, int, int, int]:
        """Tight box of the visible mask in pixel-edge coordinates (x1, y1, x2, y2), x2/y2 exclusive."""
        ys, xs = np.nonzero(self.mask)
        return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def render_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A muted, textured, cluttered background: float32 [size, size, 3] in 0..255."""
    hue, sat, val = rng.random(), rng.uniform(0.05, 0.3), rng.uniform(0.35, 0.72)
    base = np.array(colorsys.hsv_to_rgb(hue, sat, val), dtype=np.float32) * 255.0
    grid = rng.integers(3, 7)
    low = (rng.random((grid, grid, 3)) * 255).astype(np.uint8)
    low = np.asarray(Image.fromarray(low).resize((size, size), Image.BICUBIC), dtype=np.float32)
    img = base[None, None, :] + (low - 127.5) * rng.uniform(0.1, 0.3)

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    texture = rng.integers(0, 3)
    if texture == 1:  # stripes
        theta, period = rng.uniform(0, math.pi), rng.uniform(5, 14)
        img += (10 * np.sin(2 * math.pi * (xx * math.cos(theta) + yy * math.sin(theta)) / period))[
            ..., None
        ]
    elif texture == 2:  # checker
        period = int(rng.integers(6, 16))
        img += (((xx // period + yy // period) % 2) * 16 - 8)[..., None]

    clutter = Image.new("RGB", (size, size), (0, 0, 0))
    alpha = Image.new("L", (size, size), 0)
    draw, adraw = ImageDraw.Draw(clutter), ImageDraw.Draw(alpha)
    for _ in range(int(rng.integers(3, 14))):
        shade = tuple(int(c) for c in np.clip(base + rng.normal(0, 45, 3), 0, 255))
        if rng.random() < 0.6:  # a thin line
            pts = [tuple(float(v) for v in rng.uniform(0, size, 2)) for _ in range(2)]
            draw.line(pts, fill=shade, width=1)
            adraw.line(pts, fill=255, width=1)
        else:  # a small dot
            x, y = rng.uniform(0, size, 2)
            r = float(rng.uniform(0.5, 1.8))
            draw.ellipse([x - r, y - r, x + r, y + r], fill=shade)
            adraw.ellipse([x - r, y - r, x + r, y + r], fill=255)
    a = np.asarray(alpha, dtype=np.float32)[..., None] / 255.0 * 0.7
    return img * (1 - a) + np.asarray(clutter, dtype=np.float32) * a


def _paint(rng: np.random.Generator, canvas: np.ndarray, mask: np.ndarray, color: str) -> None:
    """Paint a glyph's full mask with its colour, a gentle gradient, maybe stripes and an outline."""
    size = canvas.shape[0]
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    sub = mask[y0:y1, x0:x1]
    rgb = np.array(COLORS[color], dtype=np.float32) * rng.uniform(0.88, 1.06)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    shade = (xx * math.cos(theta) + yy * math.sin(theta)) / size * rng.uniform(0, 30)
    field = rgb[None, None, :] + shade[..., None]
    if rng.random() < 0.15:
        period = rng.uniform(3, 7)
        field *= (1 - 0.25 * (np.sin(2 * math.pi * xx / period) > 0))[..., None]
    if rng.random() < 0.3:  # dark outline on the glyph boundary
        padded = np.pad(sub, 1)
        inner = sub & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        field = np.where((sub & ~inner)[..., None], field * 0.45, field)
    region = canvas[y0:y1, x0:x1]
    region[sub] = field[sub]


def sample_scene(
    rng: np.random.Generator,
    *,
    size: int,
    min_objects: int = 1,
    max_objects: int = 6,
    radius_range: tuple[float, float] = (0.07, 0.19),
    min_visible: float = 0.6,
    max_rotation: float = 30.0,
    categories: tuple[Category, ...] = CATEGORIES,
) -> tuple[np.ndarray, list[SceneObject]]:
    """Sample and render a scene.

    Returns the image (uint8 [size, size, 3]) and its objects in drawing order, each with its visible mask.
    Placement is rejected when it would leave an earlier object less than ``min_visible`` of its full area.
    ``radius_range`` is relative to ``size``; glyphs are rotated uniformly within +-``max_rotation`` degrees
    (upright-ish, like objects in photos).
    """
    canvas = render_background(rng, size)
    target = int(rng.integers(min_objects, max_objects + 1))
    placed: list[tuple[Category, str, np.ndarray]] = []
    visible: list[np.ndarray] = []
    for _ in range(target):
        category = categories[int(rng.integers(len(categories)))]
        color = _COLOR_NAMES[int(rng.integers(len(_COLOR_NAMES)))]
        angle, aspect = (
            math.radians(rng.uniform(-max_rotation, max_rotation)),
            rng.uniform(0.85, 1.15),
        )
        for _attempt in range(12):
            radius = rng.uniform(*radius_range) * size
            cx, cy = rng.uniform(0.75 * radius, size - 0.75 * radius, 2)
            full = shape_mask(
                category.name,
                height=size,
                width=size,
                cx=float(cx),
                cy=float(cy),
                radius=float(radius),
                angle=float(angle),
                aspect=float(aspect),
            )
            if full.sum() < 30:
                continue
            if all(
                (vis & ~full).sum() >= min_visible * prev.sum()
                for (_, _, prev), vis in zip(placed, visible)
            ):
                break
        else:
            continue
        visible = [vis & ~full for vis in visible] + [full.copy()]
        placed.append((category, color, full))
        _paint(rng, canvas, full, color)
    canvas += rng.normal(0, 3.0, canvas.shape)
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    objects = [
        SceneObject(cat, color, vis, int(full.sum()))
        for (cat, color, full), vis in zip(placed, visible)
    ]
    return image, objects
