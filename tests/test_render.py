"""The renderer: sizes, pages, pixels, and a typed status for every kind of bad document."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import pytest
from PIL import Image

from tests.conftest import SAMPLES, corpus_folder
from tests.pdfs import TRANSPARENCY, Page, build_pdf, square
from thumbs.options import ALL_PAGES, Limits, RenderOptions
from thumbs.render import Rendering, render_document
from thumbs.status import DocumentError, Status


def render(data: bytes, **options: Any) -> Rendering:
    return render_document(data, RenderOptions(**options))


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def status_of(data: bytes, **options: Any) -> Status:
    with pytest.raises(DocumentError) as caught:
        render(data, **options)
    return caught.value.status


def pixel(rendering: Rendering, x: float, y: float) -> tuple[int, ...]:
    """The colour at a fraction (x, y) of the first thumbnail, decoded from its PNG bytes."""
    image = decode(rendering.thumbnails[0].data).convert("RGB")
    return image.getpixel((int(x * (image.width - 1)), int(y * (image.height - 1))))  # type: ignore[return-value]


def near(colour: tuple[int, ...], expected: tuple[int, int, int], tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected, strict=True))


class TestSizes:
    def test_longest_side_is_the_requested_size_and_aspect_is_kept(self) -> None:
        rendering = render(build_pdf([Page(612, 792)]), sizes=(256,))
        thumb = rendering.thumbnails[0]
        assert (thumb.width, thumb.height) == (198, 256)
        assert decode(thumb.data).size == (198, 256)

    def test_landscape_pages_are_limited_by_width(self) -> None:
        thumb = render(build_pdf([Page(842, 595)]), sizes=(128,)).thumbnails[0]
        assert (thumb.width, thumb.height) == (128, 91)  # pdfium rounds partial pixels up

    def test_every_size_comes_from_one_render_per_page(self, monkeypatch: pytest.MonkeyPatch) -> None:
        calls: list[tuple[int, int]] = []
        original = pdfium.PdfPage.render

        def counting(page: pdfium.PdfPage, *args: Any, **kwargs: Any) -> pdfium.PdfBitmap:
            bitmap = original(page, *args, **kwargs)
            calls.append((bitmap.width, bitmap.height))
            return bitmap

        monkeypatch.setattr(pdfium.PdfPage, "render", counting)
        pdf = build_pdf([Page(100, 200), Page(100, 200)])
        rendering = render(pdf, pages=2, sizes=(64, 128, 512))
        assert calls == [(256, 512), (256, 512)]
        assert sorted((t.page, t.size, t.height) for t in rendering.thumbnails) == [
            (1, 64, 64), (1, 128, 128), (1, 512, 512), (2, 64, 64), (2, 128, 128), (2, 512, 512)
        ]

    @pytest.mark.parametrize("fmt,pil_format", [("webp", "WEBP"), ("jpeg", "JPEG"), ("png", "PNG")])
    def test_each_format_decodes_as_itself(self, fmt: str, pil_format: str) -> None:
        thumb = render(build_pdf([Page()]), format=fmt).thumbnails[0]
        assert decode(thumb.data).format == pil_format


    def test_2x_adds_double_density_thumbnails_from_the_same_render(self) -> None:
        rendering = render(build_pdf([Page(100, 200)]), sizes=(64, 128), densities=(1, 2))
        assert [(t.size, t.density, t.width, t.height) for t in rendering.thumbnails] == [
            (128, 2, 128, 256), (128, 1, 64, 128), (64, 2, 64, 128), (64, 1, 32, 64)
        ]


class TestPages:
    PDF = build_pdf([Page() for _ in range(5)])

    def test_first_page_by_default(self) -> None:
        rendering = render(self.PDF)
        assert rendering.page_count == 5
        assert [t.page for t in rendering.thumbnails] == [1]

    def test_a_count_of_leading_pages(self) -> None:
        assert [t.page for t in render(self.PDF, pages=3).thumbnails] == [1, 2, 3]

    def test_more_pages_than_the_document_has(self) -> None:
        assert [t.page for t in render(self.PDF, pages=9).thumbnails] == [1, 2, 3, 4, 5]

    def test_a_blank_first_page_is_skipped_when_asked_and_the_page_recorded(self) -> None:
        inked = square(10, 10, 50, "0 0 1 rg")
        pdf = build_pdf([Page(), Page(), Page(content=inked), Page()])
        assert [t.page for t in render(pdf).thumbnails] == [1]
        assert [t.page for t in render(pdf, skip_blank=True).thumbnails] == [3]
        assert [t.page for t in render(pdf, skip_blank=True, pages=2).thumbnails] == [3, 4]

    def test_an_all_blank_document_keeps_its_first_page(self) -> None:
        pdf = build_pdf([Page(), Page()])
        assert [t.page for t in render(pdf, skip_blank=True).thumbnails] == [1]

    def test_all_pages_stops_at_the_page_limit(self) -> None:
        rendering = render(self.PDF, pages=ALL_PAGES, limits=Limits(max_pages=4))
        assert [t.page for t in rendering.thumbnails] == [1, 2, 3, 4]


class TestPixels:
    def test_rotated_pages_come_out_as_a_viewer_shows_them(self) -> None:
        # A red square at the top left of a landscape page; /Rotate 90 turns it clockwise,
        # so the page shows portrait with the square at the top right.
        pdf = build_pdf([Page(200, 100, square(0, 50, 50, "1 0 0 rg"), rotate=90)])
        rendering = render(pdf, format="png", sizes=(200,))
        thumb = rendering.thumbnails[0]
        assert (thumb.width, thumb.height) == (100, 200)
        assert near(pixel(rendering, 0.85, 0.1), (255, 0, 0))
        assert near(pixel(rendering, 0.15, 0.1), (255, 255, 255))

    def test_cmyk_colours_convert_to_the_rgb_a_viewer_shows(self) -> None:
        # Process cyan and process red as Acrobat shows them, not the naive 255 - C inversion.
        content = square(0, 0, 100, "1 0 0 0 k") + square(100, 0, 100, "0 1 1 0 k")
        rendering = render(build_pdf([Page(200, 100, content)]), format="png", sizes=(200,))
        assert near(pixel(rendering, 0.25, 0.5), (0, 174, 239), 30)
        assert near(pixel(rendering, 0.75, 0.5), (237, 28, 36), 30)

    def test_grayscale_colours_stay_neutral(self) -> None:
        rendering = render(build_pdf([Page(200, 100, square(0, 0, 200, "0.5 g"))]), format="png")
        red, green, blue = pixel(rendering, 0.5, 0.5)
        assert red == green == blue and 120 <= red <= 135

    def test_transparency_is_flattened_onto_white(self) -> None:
        content = "/Half gs\n" + square(0, 0, 100, "0 0 0 rg")
        pdf = build_pdf([Page(200, 100, content, resources=TRANSPARENCY)])
        rendering = render(pdf, format="png", sizes=(200,))
        image = decode(rendering.thumbnails[0].data)
        assert image.mode == "RGB"
        assert near(pixel(rendering, 0.25, 0.5), (128, 128, 128))
        assert near(pixel(rendering, 0.75, 0.5), (255, 255, 255), 0)


    def test_the_background_under_transparency_is_configurable(self) -> None:
        rendering = render(build_pdf([Page()]), format="png", background=(255, 0, 255))
        assert near(pixel(rendering, 0.5, 0.5), (255, 0, 255), 0)

    def test_dense_fine_drawings_keep_their_true_coverage_at_thumbnail_scale(self) -> None:
        # 500 strokes half a point wide, 4 points apart on a 2000-point page: one eighth ink.
        # Drawn one device pixel wide each at 256 px they would blacken the whole page.
        strokes = "".join(f"{x} 0 m {x} 2000 l\n" for x in range(0, 2000, 4))
        pdf = build_pdf([Page(2000, 2000, "0.5 w 0 0 0 RG\n" + strokes + "S\n")])
        rendering = render(pdf, format="png")
        grey = decode(rendering.thumbnails[0].data).convert("L")
        mean = sum(grey.getdata()) / (grey.width * grey.height)
        assert mean > 150, f"the page came out nearly black (mean grey {mean:.0f})"
        assert rendering.timings["supersample"] > 0

    def test_dark_pages_by_design_stay_dark(self) -> None:
        pdf = build_pdf([Page(2000, 2000, square(0, 0, 2000, "0 0 0 rg"))])
        grey = decode(render(pdf, format="png").thumbnails[0].data).convert("L")
        assert grey.getextrema() == (0, 0)


class TestBadDocuments:
    def test_text_with_a_pdf_name_is_not_a_pdf(self) -> None:
        assert status_of(b"hello, I am not a PDF\n" * 10) is Status.NOT_PDF

    def test_an_empty_object_is_not_a_pdf(self) -> None:
        assert status_of(b"") is Status.NOT_PDF

    def test_a_header_followed_by_garbage_is_corrupt(self) -> None:
        assert status_of(b"%PDF-1.7\n" + bytes(range(256)) * 4) is Status.CORRUPT

    def test_a_truncated_file_renders_or_is_corrupt(self) -> None:
        data = (SAMPLES / "sample-files" / "pdflatex-image.pdf").read_bytes()
        try:
            render(data[: len(data) // 3])
        except DocumentError as error:
            assert error.status is Status.CORRUPT

    def test_zero_sized_pages_are_invalid(self) -> None:
        # pdfium replaces a broken MediaBox with Letter, but a crop box outside it leaves nothing.
        pdf = build_pdf([Page(media_box="[0 0 200 100] /CropBox [300 300 400 400]")])
        assert status_of(pdf) is Status.INVALID_PAGE

    def test_absurdly_large_pages_are_invalid(self) -> None:
        assert status_of(build_pdf([Page(media_box="[0 0 9000000 10]")])) is Status.INVALID_PAGE

    def test_bitmaps_over_the_pixel_limit_are_too_large(self) -> None:
        pdf = build_pdf([Page(100, 100)])
        assert status_of(pdf, sizes=(1024,), limits=Limits(max_pixels=1000)) is Status.TOO_LARGE

    def test_password_protected_files_need_a_password(self) -> None:
        data = (SAMPLES / "sample-files" / "libreoffice-writer-password.pdf").read_bytes()
        assert status_of(data) is Status.PASSWORD_REQUIRED


def _has_ink(thumb_data: bytes) -> bool:
    """Whether a thumbnail shows anything: some pixel well darker than the paper."""
    low, _high = decode(thumb_data).convert("L").getextrema()
    return low < 160


class TestCorpus:
    def test_bundled_samples_render_with_ink_on_the_page(self) -> None:
        for path in sorted((SAMPLES / "sample-files").glob("*.pdf")):
            if "password" in path.name:
                continue
            thumb = render(path.read_bytes()).thumbnails[0]
            assert max(thumb.width, thumb.height) == 256, path.name
            assert _has_ink(thumb.data), f"{path.name} rendered blank"

    def test_sample_files_page_counts_match_files_json(
        self, sample_files_index: dict[str, dict[str, Any]]
    ) -> None:
        folder = corpus_folder("sample-files")
        checked = 0
        for relative, entry in sample_files_index.items():
            if not (folder / relative).is_file():
                continue  # files.json also lists a few files the corpus does not carry
            data = (folder / relative).read_bytes()
            if entry.get("encrypted") and "password" in relative:
                assert status_of(data) is Status.PASSWORD_REQUIRED
                continue
            try:
                rendering = render(data)
            except DocumentError as error:
                assert error.status is Status.CORRUPT, relative
                continue
            assert rendering.page_count == entry["pages"], relative
            thumb = rendering.thumbnails[0]
            assert max(thumb.width, thumb.height) == 256, relative
            assert _has_ink(thumb.data), f"{relative} rendered blank"
            checked += 1
        assert checked >= 25

    def test_a_failure_without_a_code_is_not_mistaken_for_the_previous_files(self) -> None:
        folder = corpus_folder("pdfium")
        assert status_of((folder / "encrypted.pdf").read_bytes()) is Status.PASSWORD_REQUIRED
        assert status_of((folder / "circular_viewer_ref.pdf").read_bytes()) is Status.CORRUPT

    def test_every_pdfium_test_file_ends_in_a_result_or_a_typed_status(self) -> None:
        folder = corpus_folder("pdfium")
        outcomes: dict[str, int] = {}
        for path in sorted(folder.glob("*.pdf")):
            try:
                render(path.read_bytes())
                outcome = "ok"
            except DocumentError as error:
                assert error.status in Status, path.name
                outcome = error.status.value
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        assert sum(outcomes.values()) == len(list(folder.glob("*.pdf")))
        assert outcomes["ok"] > 200 and outcomes["password_required"] >= 5


def test_bundled_samples_exist() -> None:
    assert len(list(Path(SAMPLES).rglob("*.pdf"))) >= 10
