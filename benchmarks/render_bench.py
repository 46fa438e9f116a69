"""Render the first page of every PDF in a folder with several renderers and compare their speed.

Why: the project's renderer (`thumbs.render.render_document`) promises to be at least 2x faster
than poppler's `pdftoppm`, 1.3x faster than PyMuPDF, and within 15% of the time pdfium itself
needs to open, load and rasterise the page (the "floor"). This command measures all of them in
one process, on the same files, in the same run, and prints the ratios next to those targets, plus
a breakdown of where the project's renderer spends its time per document.

Every file's bytes are read into memory before timing, so disk reads count for nobody except
`pdftoppm`, which runs as one subprocess per file reading from disk, as a user would run it.
Renderers take turns file by file (the starting renderer rotates) so cache effects are shared.

    python benchmarks/render_bench.py [CORPUS] [--format webp|jpeg|png] [--repeat N] ...
"""

from __future__ import annotations

import argparse
import importlib
import io
import logging
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
try:
    import thumbs  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO / "lib"))

import PIL  # noqa: E402
import pypdfium2 as pdfium  # noqa: E402
from PIL import Image  # noqa: E402

from thumbs.keys import thumbnail_key  # noqa: E402
from thumbs.options import FORMATS, RenderOptions  # noqa: E402
from thumbs.render import Rendering, encode, render_document  # noqa: E402
from thumbs.status import DocumentError  # noqa: E402

try:  # optional: without it the PyMuPDF row is skipped
    pymupdf: Any = importlib.import_module("pymupdf")
except ImportError:
    pymupdf = None

# pypdfium2 logs a warning per XFA document when forms are initialised; it would flood the output.
logging.getLogger("pypdfium2").setLevel(logging.ERROR)

DEFAULT_CORPUS = REPO.parent / "shared" / "corpus"
STEPS = ("open", "load_page", "render", "convert", "encode")
PIL_FORMATS = {"webp": "WEBP", "jpeg": "JPEG", "png": "PNG"}
NAIVE_DPI = 200
PDFTOPPM_TIMEOUT = 300.0
KEYS = {
    "thumbs": "thumbs",
    "isolated": "thumbs (isolated)",
    "floor": "pdfium floor",
    "naive": "naive",
    "pdftoppm": "pdftoppm",
    "pymupdf": "PyMuPDF",
}


@dataclass(frozen=True)
class Doc:
    """One corpus file: its path (for pdftoppm), its name in the corpus and its bytes."""

    path: Path
    name: str
    data: bytes


@dataclass
class Renderer:
    """One row of the table: a function rendering one document's first page, or why not."""

    key: str
    render: Callable[[Doc], Any] | None
    note: str = ""
    skipped: str = ""
    after: Callable[[Doc, Any, float], None] | None = None
    """Called untimed after each successful render with the result and its seconds."""

    def __call__(self, doc: Doc) -> Any:
        assert self.render is not None, f"{self.key} is skipped: {self.skipped}"
        return self.render(doc)


@dataclass
class Pass:
    """One renderer's times over one pass of the file list."""

    times: list[float] = field(default_factory=list)
    """Seconds per file, in file order, failed or not."""
    failures: dict[int, str] = field(default_factory=dict)
    """File index to the cause of the failure."""

    @property
    def seconds(self) -> float:
        return sum(self.times)

    @property
    def ok(self) -> int:
        return len(self.times) - len(self.failures)


@dataclass
class Breakdown:
    """Where the project's renderer spent its time, summed over successful documents."""

    docs: int = 0
    wall: float = 0.0
    steps: Counter[str] = field(default_factory=Counter)
    uploads: int = 0
    upload_seconds: float = 0.0


def load_corpus(folder: Path, limit: int | None) -> list[Doc]:
    """Every `*.pdf` under the folder, sorted by name, read into memory."""
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".pdf" and p.is_file())
    paths = paths[:limit] if limit else paths
    return [Doc(p, p.relative_to(folder).as_posix(), p.read_bytes()) for p in paths]


def failure_name(error: BaseException) -> str:
    if isinstance(error, DocumentError):
        return str(error.status)
    return type(error).__name__


def thumbnail_scale(width: float, height: float, size: int) -> float:
    if min(width, height) <= 0 or not math.isfinite(width + height):
        raise ValueError(f"page size {width} x {height}")
    # A hair under the exact ratio, as thumbs does, so rounding up lands on the size exactly.
    return size / max(width, height) * (1 - 1e-9)


# --- renderers -----------------------------------------------------------------------------------


def thumbs_renderer(options: RenderOptions) -> Callable[[Doc], Rendering]:
    def render(doc: Doc) -> Rendering:
        return render_document(doc.data, options)

    return render


def isolated_renderer(options: RenderOptions, stack: ExitStack) -> Renderer:
    try:
        from thumbs.isolation import RenderPool
    except ImportError:
        return Renderer("isolated", None, skipped="skipped: thumbs.isolation not available")
    try:
        pool = stack.enter_context(RenderPool(options, size=1))
    except Exception as error:  # the API is still being written: report, do not crash
        return Renderer("isolated", None, skipped=f"skipped: RenderPool failed: {error!r}")

    def render(doc: Doc) -> Rendering:
        rendering: Rendering = pool.render(doc.data)
        return rendering

    return Renderer("isolated", render, note="1 worker, started before timing")


def floor_renderer(size: int) -> Callable[[Doc], None]:
    """pdfium alone: open, load page 1, rasterise at thumbnail scale; no conversion, no encoding.

    Same flags as the project's renderer (forms initialised, annotations and forms drawn, white
    fill, RGB byte order) so both ask pdfium for the same pixels.
    """

    def render(doc: Doc) -> None:
        pdf = pdfium.PdfDocument(doc.data)
        try:
            try:
                pdf.init_forms()
            except pdfium.PdfiumError:
                pass
            page = pdf[0]
            try:
                width, height = page.get_size()
                scale = thumbnail_scale(width, height, size)
                bitmap = page.render(
                    scale=scale,
                    fill_color=(255, 255, 255, 255),
                    rev_byteorder=True,
                    draw_annots=True,
                    may_draw_forms=True,
                )
                bitmap.close()
            finally:
                page.close()
        finally:
            pdf.close()

    return render


def naive_renderer(size: int, fmt: str) -> Callable[[Doc], bytes]:
    """What a first attempt looks like: render at 200 DPI, shrink with Pillow, Pillow defaults."""

    def render(doc: Doc) -> bytes:
        pdf = pdfium.PdfDocument(doc.data)
        try:
            image = pdf[0].render(scale=NAIVE_DPI / 72).to_pil()
            image.thumbnail((size, size))
            buffer = io.BytesIO()
            image.save(buffer, PIL_FORMATS[fmt])
            return buffer.getvalue()
        finally:
            pdf.close()

    return render


def pdftoppm_renderer(size: int, fmt: str, quality: int, stack: ExitStack) -> Renderer:
    exe = shutil.which("pdftoppm")
    if exe is None:
        return Renderer("pdftoppm", None, skipped="skipped: pdftoppm not installed")
    out = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pdftoppm-")))
    # pdftoppm writes no WebP; JPEG at the same quality is its nearest lossy output.
    kind = ["-png"] if fmt == "png" else ["-jpeg", "-jpegopt", f"quality={quality}"]
    base = [exe, "-f", "1", "-l", "1", "-scale-to", str(size), *kind]

    def render(doc: Doc) -> None:
        done = subprocess.run(
            [*base, str(doc.path), str(out / "page")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=PDFTOPPM_TIMEOUT,
            check=False,
        )
        written = os.listdir(out)
        for name in written:
            os.unlink(out / name)
        if done.returncode != 0:
            raise RuntimeError(f"pdftoppm exit {done.returncode}")
        if not written:
            raise RuntimeError("pdftoppm wrote nothing")

    note = f"subprocess per file, reads from disk, {kind[0][1:].upper()} output"
    return Renderer("pdftoppm", render, note=note)


def pymupdf_renderer(size: int, fmt: str, quality: int) -> Renderer:
    if pymupdf is None:
        return Renderer("pymupdf", None, skipped="skipped: pymupdf not importable")
    pymupdf.TOOLS.mupdf_display_errors(False)
    pymupdf.TOOLS.mupdf_display_warnings(False)

    def render(doc: Doc) -> bytes:
        with pymupdf.open(stream=doc.data, filetype="pdf") as pdf:
            page = pdf.load_page(0)
            zoom = thumbnail_scale(page.rect.width, page.rect.height, size)
            pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), alpha=False)
            if fmt == "jpeg":
                data: bytes = pix.tobytes("jpeg", jpg_quality=quality)
                return data
            image = Image.frombytes("RGB", (pix.width, pix.height), pix.samples)
            return encode(image, fmt, quality)

    version = pymupdf.VersionBind
    encoder = "pixmap.tobytes" if fmt == "jpeg" else "Pillow, same settings as thumbs"
    return Renderer("pymupdf", render, note=f"{version}, encoded with {encoder}")


# --- upload --------------------------------------------------------------------------------------


@contextmanager
def upload_hook(
    dest: str | None, breakdown: Breakdown
) -> Iterator[tuple[Callable[[Doc, Any, float], None], str]]:
    """Accumulate the thumbs breakdown; given a destination, also write each thumbnail there.

    `dest` is `s3://bucket/prefix`, a folder, `""` for a fresh temporary folder, or None.
    """
    sink: Any = None
    prefix = ""
    where = "not measured (pass --upload [s3://bucket/prefix | folder] to measure it)"
    with ExitStack() as stack:
        if dest is not None:
            from thumbs.storage import S3Settings, parse_location, sink_for

            dest = dest or stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-up-"))
            location = parse_location(dest)
            sink, prefix = sink_for(location, S3Settings.from_env()), location.prefix
            where = "S3 PutObject" if location.is_s3 else "local folder, temp file + rename"

        def after(doc: Doc, rendering: Rendering, seconds: float) -> None:
            breakdown.docs += 1
            breakdown.wall += seconds
            breakdown.steps.update(rendering.timings)
            if sink is None:
                return
            for t in rendering.thumbnails:
                key = thumbnail_key(prefix, "corpus", doc.name, t.page, t.size, t.format)
                start = time.perf_counter()
                sink.put(key, t.data, FORMATS[t.format])
                breakdown.upload_seconds += time.perf_counter() - start
                breakdown.uploads += 1

        yield after, where


# --- measuring -----------------------------------------------------------------------------------


def warm_up(renderers: list[Renderer], doc: Doc) -> None:
    """One untimed call each, so one-off start-up costs (fonts, page cache) land on nobody."""
    for r in renderers:
        try:
            r(doc)
        except Exception:
            pass


def run(renderers: list[Renderer], docs: list[Doc], repeat: int) -> dict[str, list[Pass]]:
    """Each pass goes over every file; per file, each renderer in turn, rotating who goes first."""
    passes = {r.key: [Pass() for _ in range(repeat)] for r in renderers}
    clock = time.perf_counter
    for number in range(repeat):
        for index, doc in enumerate(docs):
            shift = (index + number) % len(renderers)
            for r in renderers[shift:] + renderers[:shift]:
                tally = passes[r.key][number]
                start = clock()
                try:
                    result = r(doc)
                except Exception as error:  # a failure of that renderer on that file
                    tally.times.append(clock() - start)
                    tally.failures[index] = failure_name(error)
                    continue
                seconds = clock() - start
                tally.times.append(seconds)
                if r.after is not None:
                    r.after(doc, result, seconds)
    return passes


def chosen(passes: list[Pass], stat: str) -> Pass:
    if stat == "best":
        return min(passes, key=lambda p: p.seconds)
    median = statistics.median_low(p.seconds for p in passes)
    return next(p for p in passes if p.seconds == median)


# --- report --------------------------------------------------------------------------------------


def format_table(rows: list[list[str]], notes: bool = False) -> str:
    """Plain aligned text: the first column (and the last, if `notes`) left, the rest right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            c.ljust(w) if i == 0 or (notes and i == len(row) - 1) else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def results_table(
    renderers: list[Renderer], best: dict[str, Pass], total: int, reference: float | None
) -> str:
    head = [
        "renderer",
        "files",
        "ok",
        "failed",
        "seconds",
        "docs/s",
        "pages/s",
        "ms/doc",
        "median ms",
        "time/thumbs",
        "notes",
    ]
    rows = [head]
    for r in renderers:
        if r.render is None:
            rows.append([KEYS[r.key], str(total)] + ["-"] * 8 + [r.skipped])
            continue
        p = best[r.key]
        ratio = f"{p.seconds / reference:.2f}" if reference else "-"
        rows.append(
            [
                KEYS[r.key],
                str(total),
                str(p.ok),
                str(len(p.failures)),
                f"{p.seconds:.3f}",
                f"{total / p.seconds:.1f}",
                f"{p.ok / p.seconds:.1f}",
                f"{1000 * p.seconds / total:.2f}",
                f"{1000 * statistics.median(p.times):.2f}",
                ratio,
                r.note,
            ]
        )
    return format_table(rows, notes=True)


def failures_text(renderers: list[Renderer], best: dict[str, Pass]) -> str:
    lines = []
    for r in renderers:
        if r.render is not None and best[r.key].failures:
            counts = Counter(best[r.key].failures.values()).most_common()
            causes = ", ".join(f"{n} {c}" for c, n in counts)
            lines.append(f"  {KEYS[r.key]}: {causes}")
    return "\n".join(lines) if lines else "  none"


def slowest_text(
    renderers: list[Renderer], best: dict[str, Pass], docs: list[Doc], count: int
) -> str:
    """The files thumbs took longest on, with every renderer's time on each (ms)."""
    if "thumbs" not in best or count < 1:
        return "  not shown"
    times = best["thumbs"].times
    worst = sorted(range(len(docs)), key=lambda i: times[i], reverse=True)[:count]
    keys = [r.key for r in renderers if r.key in best]
    rows = [["file"] + [KEYS[k] for k in keys]]
    for i in worst:
        cells = [f"{1000 * best[k].times[i]:.1f}" for k in keys]
        marks = ["" if i not in best[k].failures else " (failed)" for k in keys]
        rows.append([docs[i].name] + [c + m for c, m in zip(cells, marks, strict=True)])
    share = 100 * sum(times[i] for i in worst) / sum(times)
    table = format_table(rows)
    return f"{table}\n(these {len(worst)} files are {share:.0f}% of thumbs' total time)"


def breakdown_text(b: Breakdown, upload_where: str) -> str:
    if not b.docs:
        return "  not measured (the thumbs row did not run or rendered nothing)"
    rows = [["step", "ms/doc", "share"]]
    other = b.wall - sum(b.steps[s] for s in STEPS)
    parts = [(s, b.steps[s]) for s in STEPS] + [("other (checks, close, Python)", other)]
    for name, seconds in parts:
        rows.append([name, f"{1000 * seconds / b.docs:.3f}", f"{100 * seconds / b.wall:.1f}%"])
    rows.append(["total render", f"{1000 * b.wall / b.docs:.3f}", "100.0%"])
    text = format_table(rows)
    if b.uploads:
        per_doc = 1000 * b.upload_seconds / b.docs
        text += f"\nupload ({upload_where}): {per_doc:.3f} ms/doc, {b.uploads} thumbnails"
        text += f", {100 * b.upload_seconds / b.wall:.1f}% on top of render time"
    else:
        text += f"\nupload: {upload_where}"
    return f"mean over {b.docs} rendered documents (all passes)\n{text}"


TARGETS: list[tuple[str, str, str, Callable[[float], bool]]] = [
    ("pdftoppm", "pdftoppm", "{:.2f}x faster (target 2x)", lambda v: v >= 2),
    ("pymupdf", "PyMuPDF", "{:.2f}x (target 1.3x)", lambda v: v >= 1.3),
    ("floor", "pdfium floor", "{:.2f}x the floor's time (target <= 1.15)", lambda v: v <= 1.15),
]


def target_lines(best: dict[str, Pass], renderers: list[Renderer]) -> list[str]:
    """One line per target, on total time, with the same ratio on the median file after it.

    The targets hold with isolation included, as the jobs render: they are checked on the
    isolated renderer when it ran, and on the in-process one otherwise (said in the line).
    """
    skipped = {r.key: r.skipped for r in renderers if r.render is None}
    subject = "isolated" if "isolated" in best else "thumbs"
    name = "thumbs (isolated)" if subject == "isolated" else "thumbs (in process)"
    lines = []
    for key, label, text, met in TARGETS:
        if subject not in best or key not in best:
            why = "thumbs not run" if subject not in best else skipped.get(key, "not run")
            lines.append(f"{name} vs {label}: not measured ({why})")
            continue
        ours, other = best[subject], best[key]
        total = other.seconds / ours.seconds
        median = statistics.median(other.times) / statistics.median(ours.times)
        if key == "floor":  # this target is thumbs' time as a multiple of the floor's
            total, median = 1 / total, 1 / median
        verdict = "met" if met(total) else "NOT met"
        lines.append(
            f"{name} vs {label}: {text.format(total)} [{verdict}]; "
            f"on the median file: {median:.2f}x"
        )
    return lines


def environment_text(docs: list[Doc], args: argparse.Namespace) -> str:
    size_mb = sum(len(d.data) for d in docs) / 1e6
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    poppler = "absent"
    if exe := shutil.which("pdftoppm"):
        out = subprocess.run([exe, "-v"], capture_output=True, text=True, check=False)
        poppler = (out.stderr or out.stdout).split("\n", 1)[0].replace("pdftoppm version ", "")
    versions = [
        f"Python {platform.python_version()}",
        f"pypdfium2 {pdfium.PYPDFIUM_INFO} (pdfium {pdfium.PDFIUM_INFO.build})",
        f"Pillow {PIL.__version__}",
        f"PyMuPDF {pymupdf.VersionBind if pymupdf else 'absent'}",
        f"poppler {poppler}",
    ]
    return "\n".join(
        [
            f"corpus: {args.corpus} ({len(docs)} PDFs, {size_mb:.1f} MB, read into memory first)",
            f"task: first page, longest side {args.size} px, {args.format}; "
            f"{args.repeat} pass(es), reporting the {args.stat} pass per renderer",
            f"process: one, single-threaded; CPUs allowed: {cpus or 'unknown'}",
            "versions: " + ", ".join(versions),
        ]
    )


def build(
    args: argparse.Namespace, options: RenderOptions, stack: ExitStack, after: Any
) -> list[Renderer]:
    makers: dict[str, Callable[[], Renderer]] = {
        "thumbs": lambda: Renderer("thumbs", thumbs_renderer(options), "in process", after=after),
        "isolated": lambda: isolated_renderer(options, stack),
        "floor": lambda: Renderer("floor", floor_renderer(args.size), "open + load + render only"),
        "naive": lambda: Renderer(
            "naive", naive_renderer(args.size, args.format), "200 DPI, shrink, Pillow defaults"
        ),
        "pdftoppm": lambda: pdftoppm_renderer(args.size, args.format, options.quality, stack),
        "pymupdf": lambda: pymupdf_renderer(args.size, args.format, options.quality),
    }
    return [makers[key]() for key in KEYS if key in args.only]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "corpus",
        nargs="?",
        type=Path,
        default=DEFAULT_CORPUS,
        help="folder searched recursively for *.pdf (default: ../shared/corpus)",
    )
    parser.add_argument("--format", choices=sorted(PIL_FORMATS), default="webp")
    parser.add_argument("--size", type=int, default=256, help="longest side in pixels")
    parser.add_argument("--repeat", type=int, default=1, help="passes over the file list")
    parser.add_argument(
        "--stat",
        choices=("median", "best"),
        default="median",
        help="which pass to report per renderer when --repeat > 1",
    )
    parser.add_argument("--limit", type=int, default=None, help="use only the first N files")
    parser.add_argument(
        "--slowest", type=int, default=5, help="list the N files thumbs took longest on (0: none)"
    )
    parser.add_argument(
        "--only", default=",".join(KEYS), help=f"comma-separated renderers among: {', '.join(KEYS)}"
    )
    parser.add_argument(
        "--upload",
        nargs="?",
        const="",
        default=None,
        metavar="DEST",
        help="also time writing thumbs' output to DEST (s3://bucket/prefix or a "
        "folder); without DEST, to --upload-dir",
    )
    parser.add_argument(
        "--upload-dir",
        default=None,
        help="folder for --upload without DEST (default: a temporary folder)",
    )
    args = parser.parse_args(argv)
    args.only = {k.strip().lower() for k in args.only.split(",") if k.strip()}
    if unknown := args.only - set(KEYS):
        parser.error(f"unknown renderers {sorted(unknown)}; choose among {list(KEYS)}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if not args.corpus.is_dir():
        parser.error(f"{args.corpus} is not a folder")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = RenderOptions(pages=1, sizes=(args.size,), format=args.format)
    docs = load_corpus(args.corpus, args.limit)
    if not docs:
        print(f"no PDFs under {args.corpus}", file=sys.stderr)
        return 1
    dest = args.upload or args.upload_dir or ""
    breakdown = Breakdown()
    with ExitStack() as stack:
        measure_upload = args.upload is not None or args.upload_dir is not None
        hook = upload_hook(dest if measure_upload else None, breakdown)
        after, where = stack.enter_context(hook)
        renderers = build(args, options, stack, after)
        active = [r for r in renderers if r.render is not None]
        warm_up(active, docs[0])
        passes = run(active, docs, args.repeat)
    best = {key: chosen(p, args.stat) for key, p in passes.items()}
    reference = best["thumbs"].seconds if "thumbs" in best else None
    print(environment_text(docs, args))
    print()
    print(results_table(renderers, best, len(docs), reference))
    print("\ndocs/s counts every file attempted, failed or not; pages/s counts pages rendered.")
    print("time/thumbs: the renderer's total time divided by thumbs'.")
    print("\nfailures by cause:")
    print(failures_text(renderers, best))
    if args.slowest > 0:
        print(f"\nslowest {args.slowest} files for thumbs, ms per renderer:")
        print(slowest_text(renderers, best, docs, args.slowest))
    print("\nthumbs, where the time goes per document:")
    print(breakdown_text(breakdown, where))
    print()
    print("\n".join(target_lines(best, renderers)))
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\npeak RSS: {own:.0f} MB this process; {children:.0f} MB the largest child process")
    print("(a child's figure includes what it shared with this process when it was forked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
