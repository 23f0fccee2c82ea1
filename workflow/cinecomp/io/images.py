"""8-bit picture sheets: the grid of tiles behind every PNG a person looks at (the review contact
sheet, the eval strips, the curation contact sheets), nearest-neighbour upscaling of small frames,
and the atomic PNG write. Each caller draws its own labels into the cell boxes :func:`tile_rows` returns.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from ..atomic import atomic_path


def upscale(img: np.ndarray, k: int) -> np.ndarray:
    """Nearest-neighbour integer upscale (each pixel -> a k x k block)."""
    return img if k == 1 else np.repeat(np.repeat(img, k, axis=0), k, axis=1)


def scale_to(size: int, minimum: int | None) -> int:
    """Smallest integer k with size * k >= minimum (1 when already large enough or no minimum)."""
    return max(1, math.ceil((minimum or 0) / size))


def tile_rows(rows: list[list[np.ndarray | Image.Image]], *, gap: int = 0, top: int = 0, row_head: int = 0,
              row_foot: int = 0, bottom: int = 0, min_width: int = 0,
              background=(0, 0, 0)) -> tuple[Image.Image, list[list[tuple[int, int, int, int]]]]:
    """An RGB sheet of tiles (uint8 (H, W, 3) arrays or PIL images), row by row, left-aligned.

    Layout, top to bottom: ``top`` pixels, then per row ``row_head`` pixels, the row's tiles (its height
    is its tallest tile's), ``row_foot`` pixels and ``gap``; then ``bottom`` pixels. Tiles stand ``gap``
    apart and from the left edge; the sheet is as wide as its widest row plus ``gap`` (at least
    ``min_width``). Returns the sheet and every tile's box (x0, y0, x1, y1), x1/y1 exclusive, per row."""
    tiles = [[t if isinstance(t, Image.Image) else Image.fromarray(t) for t in row] for row in rows]
    width = max([min_width] + [gap + sum(t.width + gap for t in row) for row in tiles])
    height = top + sum(row_head + max((t.height for t in row), default=0) + row_foot + gap for row in tiles) + bottom
    sheet = Image.new("RGB", (width, height), tuple(background))
    boxes, y = [], top
    for row in tiles:
        y += row_head
        x, row_boxes = gap, []
        for t in row:
            sheet.paste(t, (x, y))
            row_boxes.append((x, y, x + t.width, y + t.height))
            x += t.width + gap
        boxes.append(row_boxes)
        y += max((t.height for t in row), default=0) + row_foot + gap
    return sheet, boxes


def save_png(img: Image.Image, path, text: dict[str, str] | None = None) -> Path:
    """Write ``img`` as a PNG atomically (the folder is made), with optional text chunks."""
    info = None
    if text:
        info = PngInfo()
        for k, v in text.items():
            info.add_text(k, v)
    with atomic_path(path, suffix=".png") as tmp:
        img.save(tmp, format="PNG", pnginfo=info)
    return Path(path)
