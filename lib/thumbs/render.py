"""Render PDF pages to thumbnails with pdfium, once per page, at the largest requested size.

Each chosen page is rasterised directly at the scale that makes its longest side the largest
requested size; smaller sizes are reduced from that bitmap. Rendering at print resolution and
shrinking afterwards costs several times the time and memory for no visible gain.

Every pdfium object is closed explicitly, inner before outer. pdfium is not thread-safe: call
this module from one thread per process.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pypdfium2 as pdfium
from PIL import Image, ImageStat

from thumbs.options import RenderOptions
from thumbs.status import DocumentError, Status

PDF_HEADER_WINDOW = 1024
"""pdfium, like Acrobat, accepts a `%PDF-` header preceded by up to this many bytes of junk."""

_OPEN_ERRORS: dict[int, tuple[Status, str]] = {
    pdfium.raw.FPDF_ERR_PASSWORD: (Status.PASSWORD_REQUIRED, "the document needs a password"),
    pdfium.raw.FPDF_ERR_SECURITY: (
        Status.UNSUPPORTED_SECURITY,
        "the document uses an unsupported security handler",
    ),
    pdfium.raw.FPDF_ERR_FORMAT: (Status.CORRUPT, "the file is not a readable PDF"),
    pdfium.raw.FPDF_ERR_FILE: (Status.CORRUPT, "pdfium could not load the file and gave no reason"),
}


@dataclass(frozen=True)
class Thumbnail:
    """One encoded image of one page at one size."""

    page: int
    """One-based page number."""
    size: int
    """The requested longest side, in CSS pixels."""
    density: int
    """Device pixels per CSS pixel: 1, or 2 for a `@2x` thumbnail of twice the size."""
    width: int
    height: int
    format: str
    data: bytes


@dataclass
class Rendering:
    """What rendering one document produced, and where the time went."""

    page_count: int
    thumbnails: list[Thumbnail]
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent in each step: open, load_page, render, convert, supersample, encode."""


class _Stopwatch:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def render_document(data: bytes, options: RenderOptions) -> Rendering:
    """Render the chosen pages of a PDF held in memory to encoded thumbnails.

    Raises `DocumentError` with a typed status for anything wrong with the document itself;
    any other exception is a defect in this code.
    """
    if b"%PDF-" not in data[:PDF_HEADER_WINDOW]:
        raise DocumentError(Status.NOT_PDF, "no %PDF- header in the first 1024 bytes", "NoHeader")
    watch = _Stopwatch()
    with watch.step("open"):
        pdf = _open(data)
    try:
        page_count = len(pdf)
        if page_count < 1:
            raise DocumentError(Status.CORRUPT, "the document has no pages", "NoPages")
        thumbnails: list[Thumbnail] = []
        indexes = list(options.page_indexes(page_count))
        images = [_render_page(pdf, index, options, watch) for index in indexes[:1]]
        if options.skip_blank and indexes:
            indexes, images = _skip_blank_pages(pdf, page_count, indexes, images[0], options, watch)
        for position, index in enumerate(indexes):
            image = images[position] if position < len(images) else _render_page(pdf, index, options, watch)
            with watch.step("encode"):
                thumbnails.extend(_encode_sizes(image, index + 1, options))
        return Rendering(page_count, thumbnails, watch.seconds)
    finally:
        pdf.close()


BLANK_SPREAD = 3.0
"""Standard deviation of grey levels under which a page counts as blank (near-uniform)."""
BLANK_SEARCH = 10
"""Pages looked at, at most, for the first page that is not blank."""


def _skip_blank_pages(
    pdf: pdfium.PdfDocument,
    page_count: int,
    indexes: list[int],
    first: Image.Image,
    options: RenderOptions,
    watch: _Stopwatch,
) -> tuple[list[int], list[Image.Image]]:
    """Move the run of pages forward past a blank first page; keep it if every page is blank."""
    index, image = indexes[0], first
    while _is_blank(image) and index + 1 < min(page_count, BLANK_SEARCH):
        index += 1
        image = _render_page(pdf, index, options, watch)
    if _is_blank(image):
        return indexes, [first]
    shifted = [i + index - indexes[0] for i in indexes if i + index - indexes[0] < page_count]
    return shifted, [image]


def _is_blank(image: Image.Image) -> bool:
    return ImageStat.Stat(image.convert("L")).stddev[0] < BLANK_SPREAD


def _mark_last_error() -> None:
    """Set pdfium's last-error code to "file error", which loading from memory never produces.

    The code is process-wide and some failed loads leave it untouched, so after a
    password-protected file the next broken file would read as password-protected too (seen with
    the corpus' `*_viewer_ref.pdf` files, which fail without a code). A successful load does not
    clear it either; a failed open of an empty path sets a value we can recognise as "no code".
    """
    pdfium.raw.FPDF_LoadDocument(b"", None)


def _open(data: bytes) -> pdfium.PdfDocument:
    _mark_last_error()
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as error:
        status, reason = _OPEN_ERRORS.get(error.err_code or -1, (Status.CORRUPT, str(error)))
        raise DocumentError(status, reason, f"PdfiumError:{error.err_code}") from error
    try:
        pdf.init_forms()
    except pdfium.PdfiumError:
        pass  # forms are a nicety: a document whose form layer fails still renders without it
    return pdf


def _render_page(
    pdf: pdfium.PdfDocument, index: int, options: RenderOptions, watch: _Stopwatch
) -> Image.Image:
    with watch.step("load_page"):
        try:
            page = pdf[index]
        except pdfium.PdfiumError as error:
            raise DocumentError(
                Status.CORRUPT, f"page {index + 1} could not be loaded", "PdfiumError"
            ) from error
    try:
        width, height = page.get_size()
        scale = _scale_for(width, height, index, options)
        with watch.step("render"):
            bitmap = page.render(
                scale=scale,
                fill_color=(*options.background, 255),
                rev_byteorder=True,
                draw_annots=True,
                may_draw_forms=True,
            )
        try:
            with watch.step("convert"):
                image = bitmap.to_pil().convert("RGB")
        finally:
            bitmap.close()
        with watch.step("supersample"):
            return _lighten_dense_page(page, image, scale, options)
    finally:
        page.close()


DENSE_DARKNESS = 100
"""Mean grey level under which a small-scale render is suspected of pdfium's hairline blackout."""
SUPERSAMPLE_FACTORS = (4, 8)
SUPERSAMPLE_PIXELS = 16_000_000
"""Most pixels a supersampled render may use, to keep the extra cost bounded."""
SMALL_SCALE = 0.5
"""Below this scale (device pixels per point), strokes narrower than 2 points go under a pixel."""


def _lighten_dense_page(
    page: pdfium.PdfPage, image: Image.Image, scale: float, options: RenderOptions
) -> Image.Image:
    """Re-render a suspiciously dark, finely drawn page at a higher scale and box-filter it down.

    pdfium draws every stroke and glyph outline at least one device pixel wide. On a large page
    of thousands of fine marks rendered to a thumbnail, those pixels cover everything and the
    page comes out nearly black, where poppler or MuPDF show the drawing. Rendering at 4x or 8x
    and averaging blocks of pixels restores the true coverage. Only dark pages at small scales
    pay for it, and only while each step makes the page clearly lighter: a page that is dark
    by design stays as it was after one extra render.
    """
    if scale >= SMALL_SCALE:
        return image
    darkness = ImageStat.Stat(image.convert("L")).mean[0]
    if darkness >= DENSE_DARKNESS:
        return image
    budget = min(SUPERSAMPLE_PIXELS, options.limits.max_pixels)
    for factor in SUPERSAMPLE_FACTORS:
        if image.width * image.height * factor * factor > budget:
            break
        bitmap = page.render(
            scale=scale * factor,
            fill_color=(*options.background, 255),
            rev_byteorder=True,
            draw_annots=True,
            may_draw_forms=True,
        )
        try:
            candidate = bitmap.to_pil().convert("RGB").resize(image.size, Image.Resampling.BOX)
        finally:
            bitmap.close()
        lighter = ImageStat.Stat(candidate.convert("L")).mean[0]
        if lighter < darkness * 1.15 + 4:
            break
        image, darkness = candidate, lighter
        if darkness >= DENSE_DARKNESS * 1.5:
            break
    return image


def _scale_for(width: float, height: float, index: int, options: RenderOptions) -> float:
    """The scale that makes the page's longest side exactly the largest requested size."""
    limits = options.limits
    longest = max(width, height)
    if not (math.isfinite(width) and math.isfinite(height)) or min(width, height) <= 0:
        raise DocumentError(
            Status.INVALID_PAGE,
            f"page {index + 1} has size {width} x {height} points",
            "InvalidPageSize",
        )
    if longest > limits.max_page_points:
        raise DocumentError(
            Status.INVALID_PAGE,
            f"page {index + 1} is {longest:.0f} points long, over {limits.max_page_points:.0f}",
            "InvalidPageSize",
        )
    # A hair under the exact ratio, so pdfium's ceil() lands on the size and not one pixel past.
    scale = options.largest / longest * (1 - 1e-9)
    pixels = math.ceil(width * scale) * math.ceil(height * scale)
    if pixels > limits.max_pixels:
        raise DocumentError(
            Status.TOO_LARGE,
            f"page {index + 1} would need {pixels} pixels, over the limit of {limits.max_pixels}",
            "PixelLimit",
        )
    return scale


def _encode_sizes(image: Image.Image, page: int, options: RenderOptions) -> list[Thumbnail]:
    thumbnails = []
    for size, density in options.targets():
        pixels = size * density
        scaled = image if pixels == options.largest else _reduce(image, pixels)
        data = encode(scaled, options.format, options.quality)
        thumbnails.append(
            Thumbnail(page, size, density, scaled.width, scaled.height, options.format, data)
        )
    return thumbnails


def _reduce(image: Image.Image, size: int) -> Image.Image:
    ratio = size / max(image.width, image.height)
    target = (max(1, round(image.width * ratio)), max(1, round(image.height * ratio)))
    return image.resize(target, Image.Resampling.LANCZOS, reducing_gap=2.0)


def encode(image: Image.Image, fmt: str, quality: int) -> bytes:
    """Encode an RGB image; settings favour cheap encoding at thumbnail sizes (see README)."""
    buffer = io.BytesIO()
    if fmt == "webp":
        image.save(buffer, "WEBP", quality=quality, method=0)
    elif fmt == "jpeg":
        image.save(buffer, "JPEG", quality=quality, optimize=False)
    elif fmt == "png":
        image.save(buffer, "PNG", compress_level=3)
    else:
        raise ValueError(f"unsupported thumbnail format {fmt!r}")
    return buffer.getvalue()
