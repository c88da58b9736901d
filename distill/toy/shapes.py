"""The toy world's vocabulary: 12 glyph categories (8 base + 4 novel), a colour palette, and rasterizers.

Every category is a union of filled polygons minus a few "holes" in a unit frame ([-1, 1]^2, y down).
Colour is an attribute drawn independently of the category, never the category itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

Polygon = list[tuple[float, float]]


@dataclass(frozen=True)
class Category:
    """One toy category: COCO id (1-based, also the semantic-label value), name and split."""

    id: int
    name: str
    split: str  # "base" | "novel"


def _regular(n: int, radius: float = 1.0, phase: float = -math.pi / 2) -> Polygon:
    return [
        (
            radius * math.cos(phase + 2 * math.pi * k / n),
            radius * math.sin(phase + 2 * math.pi * k / n),
        )
        for k in range(n)
    ]


def _star(points: int = 5, inner: float = 0.42) -> Polygon:
    out: Polygon = []
    for k in range(2 * points):
        r = 1.0 if k % 2 == 0 else inner
        a = -math.pi / 2 + math.pi * k / points
        out.append((r * math.cos(a), r * math.sin(a)))
    return out


def _heart(n: int = 40) -> Polygon:
    pts = []
    for k in range(n):
        t = 2 * math.pi * k / n
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        pts.append((x / 17.0, -(y + 2.5) / 15.5))
    return pts


def _shift(poly: Polygon, dx: float, dy: float = 0.0, scale: float = 1.0) -> Polygon:
    return [(scale * x + dx, scale * y + dy) for x, y in poly]


# name -> (filled polygons, hole polygons), in the unit frame.
_GEOMETRY: dict[str, tuple[list[Polygon], list[Polygon]]] = {
    "circle": ([_regular(40)], []),
    "square": ([[(-0.82, -0.82), (0.82, -0.82), (0.82, 0.82), (-0.82, 0.82)]], []),
    "triangle": ([_shift(_regular(3), 0.0, 0.2, 1.05)], []),
    "star": ([_star()], []),
    "ring": ([_regular(40)], [_regular(40, 0.55)]),
    "cross": (
        [
            [
                (-0.3, -1),
                (0.3, -1),
                (0.3, -0.3),
                (1, -0.3),
                (1, 0.3),
                (0.3, 0.3),
                (0.3, 1),
                (-0.3, 1),
                (-0.3, 0.3),
                (-1, 0.3),
                (-1, -0.3),
                (-0.3, -0.3),
            ]
        ],
        [],
    ),
    "heart": ([_heart()], []),
    "arrow": (
        [[(-1, -0.2), (0.15, -0.2), (0.15, -0.65), (1, 0), (0.15, 0.65), (0.15, 0.2), (-1, 0.2)]],
        [],
    ),
    "crescent": ([_regular(40)], [_shift(_regular(40), 0.42, -0.1, 0.86)]),
    "bolt": (
        [
            [
                (0.2, -1),
                (0.75, -1),
                (0.25, -0.15),
                (0.7, -0.15),
                (-0.45, 1),
                (-0.1, 0.1),
                (-0.55, 0.1),
            ]
        ],
        [],
    ),
    "hourglass": ([[(-0.8, -1), (0.8, -1), (0.12, 0), (0.8, 1), (-0.8, 1), (-0.12, 0)]], []),
    "tee": (
        [
            [
                (-1, -0.95),
                (1, -0.95),
                (1, -0.4),
                (0.28, -0.4),
                (0.28, 1),
                (-0.28, 1),
                (-0.28, -0.4),
                (-1, -0.4),
            ]
        ],
        [],
    ),
}

BASE_NAMES = ("circle", "square", "triangle", "star", "ring", "cross", "heart", "arrow")
NOVEL_NAMES = ("crescent", "bolt", "hourglass", "tee")
CATEGORIES: tuple[Category, ...] = tuple(
    Category(i + 1, name, "base" if name in BASE_NAMES else "novel")
    for i, name in enumerate(BASE_NAMES + NOVEL_NAMES)
)

# Attribute palette (name -> RGB). Saturated or extreme colours that stand out on muted backgrounds.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (245, 135, 20),
    "yellow": (240, 215, 30),
    "green": (35, 165, 55),
    "blue": (35, 75, 215),
    "purple": (135, 55, 195),
    "pink": (240, 105, 180),
    "cyan": (30, 200, 210),
    "brown": (120, 70, 30),
    "white": (248, 248, 248),
    "black": (18, 18, 18),
}


def _transform(
    poly: Polygon, *, cx: float, cy: float, radius: float, angle: float, aspect: float
) -> Polygon:
    ca, sa = math.cos(angle), math.sin(angle)
    out = []
    for x, y in poly:
        x, y = x * radius * aspect, y * radius / aspect
        out.append((cx + ca * x - sa * y, cy + sa * x + ca * y))
    return out


def shape_mask(
    name: str,
    *,
    height: int,
    width: int,
    cx: float,
    cy: float,
    radius: float,
    angle: float = 0.0,
    aspect: float = 1.0,
) -> np.ndarray:
    """Rasterize category ``name`` into a bool mask [height, width].

    ``(cx, cy)`` is the centre in pixels, ``radius`` the half-extent of the unit frame in pixels, ``angle``
    the rotation in radians, ``aspect`` a mild anisotropic stretch (x * aspect, y / aspect).
    """
    if name not in _GEOMETRY:
        raise ValueError(f"unknown toy category {name!r}; known: {sorted(_GEOMETRY)}")
    filled, holes = _GEOMETRY[name]
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in filled:
        draw.polygon(
            _transform(poly, cx=cx, cy=cy, radius=radius, angle=angle, aspect=aspect), fill=255
        )
    for poly in holes:
        draw.polygon(
            _transform(poly, cx=cx, cy=cy, radius=radius, angle=angle, aspect=aspect), fill=0
        )
    return np.asarray(canvas) > 0
