"""How close the Spark pipeline comes to cores x the single-process renderer's throughput.

Why: distributing the work must not waste it. This command measures, in one run:

1. the baseline: this project's isolated renderer (a `RenderPool` child, as the jobs use it) on
   every document of the corpus, one after another in one process, documents per second;
2. the pipeline: the backfill's rendering step on local Spark with N cores (references in,
   fetch + render + upload on executors, rows appended to a Delta table), after start-up: the
   JVM, the Python workers and their render children are warmed by a first small job;

and prints pipeline / (N x baseline). The corpus is repeated `--copies` times under distinct
keys so the timed job lasts long enough for per-job costs (scheduling, the Delta commit) to be
what they are in a real backfill: small next to the rendering.

    python benchmarks/spark_bench.py [CORPUS] [--cores 2] [--copies 8]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
try:
    import thumbs  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO / "lib"))

from thumbs import ledger  # noqa: E402
from thumbs.backfill import _refs_frame, task_count  # noqa: E402
from thumbs.isolation import RenderPool  # noqa: E402
from thumbs.options import RenderOptions  # noqa: E402
from thumbs.pipeline import JobContext, in_process_renderer, render_partitions  # noqa: E402
from thumbs.spark import local_session  # noqa: E402
from thumbs.status import DocumentError  # noqa: E402
from thumbs.storage import ObjectRef, S3Settings, list_objects, parse_location  # noqa: E402

logging.getLogger("pypdfium2").setLevel(logging.ERROR)
os.environ.setdefault("THUMBS_LOG_LEVEL", "ERROR")  # one line per failed document would drown the figures


def baseline(refs: list[ObjectRef], options: RenderOptions, isolate: bool, passes: int) -> list[float]:
    """Documents per second of the renderer alone, bytes already in memory, one figure per pass.

    A few files dominate a corpus pass (see the renderer benchmark's slowest files), so one pass
    swings by a fifth from run to run; the median of several is what the pipeline is held to.
    """
    sources = [Path(ref.uri.removeprefix("file://")).read_bytes() for ref in refs]
    rates = []
    with RenderPool(options) as pool:
        render = pool.render if isolate else in_process_renderer(options)
        render(sources[0])
        for _ in range(passes):
            started = time.perf_counter()
            for data in sources:
                try:
                    render(data)
                except DocumentError:
                    pass
            rates.append(len(sources) / (time.perf_counter() - started))
    return rates


def corpus_copies(corpus: Path, copies: int, workdir: Path) -> Path:
    """The corpus repeated under `copy-N/` folders: same bytes, distinct document keys."""
    source = workdir / "source"
    for index in range(copies):
        shutil.copytree(corpus, source / f"copy-{index}", ignore=shutil.ignore_patterns("*.json"))
    return source


def cpu_by_role() -> dict[str, float]:
    """CPU seconds so far of this machine's Spark JVM, Python workers and render children."""
    ticks = os.sysconf("SC_CLK_TCK")
    usage: dict[str, float] = {"jvm": 0.0, "python workers": 0.0, "render children": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        own = (int(fields[11]) + int(fields[12])) / ticks
        reaped = (int(fields[13]) + int(fields[14])) / ticks
        if b"java" in command and b"spark" in command:
            usage["jvm"] += own
        elif b"pyspark.daemon" in command:
            usage["python workers"] += own
            usage["render children"] += reaped
        elif b"thumbs.isolation" in command:
            usage["render children"] += own
    return usage


def pipeline(spark, refs: list[ObjectRef], ctx: JobContext, table: str, per_task: int) -> float:  # type: ignore[no-untyped-def]
    """Seconds for the rendering job over `refs`: render on executors, append to Delta."""
    frame = _refs_frame(spark, refs, 0).localCheckpoint()
    partitions = task_count(len(refs), spark.sparkContext.defaultParallelism, per_task)
    started = time.perf_counter()
    results = frame.repartition(partitions).mapInPandas(render_partitions(ctx), ledger.RESULT_SCHEMA)
    ledger.append(results, table)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", default=str(REPO.parent / "shared" / "corpus"))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--docs-per-task", type=int, default=256)
    parser.add_argument("--warm-copies", type=int, default=2, help="copies of the corpus rendered first, untimed, while the JVM compiles its hot paths")
    parser.add_argument("--baseline-passes", type=int, default=5, help="passes of the single-process baseline; the median counts")
    parser.add_argument("--in-process", action="store_true", help="render without child processes, in both measurements")
    args = parser.parse_args(argv)

    options = RenderOptions()
    with tempfile.TemporaryDirectory(prefix="spark-bench-") as work:
        workdir = Path(work)
        source = corpus_copies(Path(args.corpus), args.copies, workdir)
        refs = [r for r in list_objects(parse_location(str(source)), S3Settings()) if r.key.endswith(".pdf")]
        one_copy = [r for r in refs if r.key.startswith("copy-0/")]
        print(f"corpus: {args.corpus}, {len(one_copy)} PDFs x {args.copies} copies = {len(refs)} documents")

        rates = baseline(one_copy, options, not args.in_process, args.baseline_passes)
        single = statistics.median(rates)
        kind = "in-process" if args.in_process else "isolated"
        print(
            f"baseline: {kind} renderer, one process: {single:.1f} docs/s, median of "
            f"{len(rates)} passes ({', '.join(f'{rate:.1f}' for rate in rates)})"
        )

        spark = local_session("spark-bench", cores=args.cores)
        spark.sparkContext.setLogLevel("ERROR")
        ctx = JobContext(
            options, parse_location(str(workdir / "thumbs")), S3Settings(), "backfill", "bench",
            isolate=not args.in_process,
        )
        # Start-up: the JVM compiles its hot paths during the first jobs, and Python workers and
        # their render children start; a real backfill pays this once, then runs for hours.
        warm_refs = [r for r in refs if r.key.startswith("copy-0/")] * args.warm_copies
        warm_refs = [
            ObjectRef(r.bucket, f"warm-{i}/{r.key}", r.uri, r.etag, r.size, r.last_modified)
            for i, r in enumerate(warm_refs)
        ]
        warm = pipeline(spark, warm_refs, ctx, str(workdir / "warm"), args.docs_per_task)
        print(f"start-up job ({len(warm_refs)} documents): {warm:.1f}s, not counted")

        before = cpu_by_role()
        seconds = pipeline(spark, refs, ctx, str(workdir / "results"), args.docs_per_task)
        after = cpu_by_role()
        table = ledger.read(spark, str(workdir / "results"))
        rows = table.count()
        spent = table.selectExpr(
            "sum(fetch_ms)", "sum(render_ms)", "sum(upload_ms)", "sum(total_ms)"
        ).first()
        spark.stop()
    fetch_ms, render_ms, upload_ms, total_ms = (value or 0.0 for value in spent)
    print(
        f"executor time per document: fetch {fetch_ms / rows:.2f} ms, render {render_ms / rows:.2f} ms, "
        f"upload {upload_ms / rows:.2f} ms, start to finish {total_ms / rows:.2f} ms "
        f"(wall time x cores per document: {seconds * args.cores * 1000 / rows:.2f} ms)"
    )

    cpu = ", ".join(f"{role} {after[role] - before[role]:.1f}s" for role in before)
    print(f"CPU during the timed job ({seconds * args.cores:.1f} core-seconds available): {cpu}")
    rate = len(refs) / seconds
    fraction = rate / (args.cores * single)
    print(f"pipeline: {len(refs)} documents ({rows} rows) in {seconds:.1f}s on {args.cores} cores: {rate:.1f} docs/s")
    print(f"pipeline / ({args.cores} cores x baseline) = {fraction:.2f} (target >= 0.85)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
