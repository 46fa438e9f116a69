"""Tiny PDFs written byte by byte, so pixel tests know exactly what is on the page.

Each page is a MediaBox, an optional /Rotate, optional resources and a content stream; the
builder lays out the objects and the cross-reference table itself.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Page:
    width: float = 200
    height: float = 100
    content: str = ""
    rotate: int = 0
    resources: str = "<< >>"
    media_box: str | None = None


def build_pdf(pages: list[Page]) -> bytes:
    """A valid PDF 1.7 file holding `pages`."""
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]
    kids = []
    for page in pages:
        page_number = len(objects) + 1
        stream = page.content.encode("latin-1")
        box = page.media_box or f"[0 0 {page.width} {page.height}]"
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox {box} /Rotate {page.rotate} "
            f"/Resources {page.resources} /Contents {page_number + 1} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        kids.append(f"{page_number} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(pages)} >>".encode()

    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def square(x: float, y: float, side: float, colour: str) -> str:
    """Content that fills a square; `colour` is a PDF colour operator such as `1 0 0 rg`."""
    return f"{colour} {x} {y} {side} {side} re f\n"


TRANSPARENCY = "<< /ExtGState << /Half << /ca 0.5 /CA 0.5 >> >> >>"
"""Resources defining /Half, a graphics state that paints at 50% opacity."""
