"""Render options and safety limits, parsed from the jobs' flags and shipped to executors.

Everything here is a frozen dataclass of plain values so Spark can pickle it into the tasks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FORMATS: dict[str, str] = {"webp": "image/webp", "jpeg": "image/jpeg", "png": "image/png"}
"""Supported output formats and the Content-Type each is uploaded with."""

EXTENSIONS: dict[str, str] = {"webp": "webp", "jpeg": "jpg", "png": "png"}

ALL_PAGES = 0
"""`RenderOptions.pages` value meaning every page, up to `Limits.max_pages`."""


@dataclass(frozen=True)
class Limits:
    """Ceilings that keep one hostile document from costing more than it is worth."""

    max_source_bytes: int = 256 * 1024 * 1024
    max_pages: int = 1000
    max_pixels: int = 40_000_000
    max_page_points: float = 14_400.0 * 16
    """Largest page side accepted, in PDF points (the spec's 14,400 times a generous user unit)."""
    timeout_seconds: float = 60.0
    """Wall-clock time one document may spend rendering before its child is killed."""
    memory_bytes: int = 2 * 1024**3
    """Resident memory a render child may reach before it is killed (the document is too_large)."""
    recycle_after: int = 500
    """Documents a render child handles before it is replaced, to bound slow leaks."""


@dataclass(frozen=True)
class RenderOptions:
    """What to make of each document: which pages, at which sizes, in which format."""

    pages: int = 1
    sizes: tuple[int, ...] = (256,)
    format: str = "webp"
    quality: int = 80
    background: tuple[int, int, int] = (255, 255, 255)
    """Colour under transparent page areas (pages are always flattened: thumbnails are opaque)."""
    densities: tuple[int, ...] = (1,)
    """Pixel densities to write: `(1, 2)` adds a `@2x` thumbnail of twice each size."""
    skip_blank: bool = False
    """When the first page is near-uniform, start from the first page that is not."""
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {sorted(FORMATS)}, not {self.format!r}")
        if not self.sizes or any(s < 8 or s > 4096 for s in self.sizes):
            raise ValueError(f"sizes must be between 8 and 4096 pixels, got {self.sizes!r}")
        if self.pages < 0:
            raise ValueError(f"pages must be positive or ALL_PAGES, got {self.pages}")
        if not self.densities or any(d not in (1, 2, 3) for d in self.densities):
            raise ValueError(f"densities must be among 1, 2 and 3, got {self.densities!r}")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be between 1 and 100, got {self.quality}")

    @property
    def largest(self) -> int:
        """The longest side of the biggest bitmap needed: the largest size at the top density."""
        return max(self.sizes) * max(self.densities)

    def targets(self) -> list[tuple[int, int]]:
        """Every (size, density) to write, largest pixel count first."""
        pairs = {(size, density) for size in self.sizes for density in self.densities}
        return sorted(pairs, key=lambda pair: (-pair[0] * pair[1], pair[1]))

    def page_indexes(self, page_count: int) -> range:
        """Zero-based indexes of the pages to render for a document of `page_count` pages."""
        wanted = page_count if self.pages == ALL_PAGES else min(self.pages, page_count)
        return range(min(wanted, self.limits.max_pages))


def parse_pages(text: str) -> int:
    """Parse `--pages`: a positive count of leading pages, or `all`."""
    text = text.strip().lower()
    if text == "all":
        return ALL_PAGES
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"--pages takes a positive number or 'all', not {text!r}")
    return int(text)


def parse_colour(text: str) -> tuple[int, int, int]:
    """Parse `--background`: `#rrggbb` or `rrggbb`."""
    value = text.strip().lstrip("#")
    if not re.fullmatch(r"[0-9a-fA-F]{6}", value):
        raise ValueError(f"--background takes a colour like #ffffff, not {text!r}")
    return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))


def parse_sizes(text: str) -> tuple[int, ...]:
    """Parse `--sizes`: comma-separated longest-side lengths in pixels, e.g. `128,256,512`."""
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    if not parts or not all(p.isdigit() for p in parts):
        raise ValueError(f"--sizes takes comma-separated pixel counts, not {text!r}")
    return tuple(sorted({int(p) for p in parts}))
