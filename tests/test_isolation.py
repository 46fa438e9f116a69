"""Render children: a crash, a hang or a memory blow-up costs one document, never the pool."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.pdfs import Page, build_pdf
from thumbs.isolation import RenderPool
from thumbs.options import Limits, RenderOptions
from thumbs.status import DocumentError, Status

GOOD = build_pdf([Page(200, 100)])


def pool(entry: str, **limits: float) -> RenderPool:
    options = RenderOptions(limits=Limits(**limits))  # type: ignore[arg-type]
    return RenderPool(options, entry=f"tests.faults:{entry}")


def failure(pool: RenderPool, data: bytes) -> DocumentError:
    with pytest.raises(DocumentError) as caught:
        pool.render(data)
    return caught.value


def test_a_good_document_renders_in_a_child_like_in_process() -> None:
    with RenderPool(RenderOptions(sizes=(64, 128))) as render_pool:
        rendering = render_pool.render(GOOD)
    assert [(t.size, t.width, t.height) for t in rendering.thumbnails] == [(128, 128, 64), (64, 64, 32)]


def test_document_errors_cross_the_process_boundary_typed() -> None:
    with RenderPool(RenderOptions()) as render_pool:
        error = failure(render_pool, b"plain text")
    assert (error.status, error.error_class) == (Status.NOT_PDF, "NoHeader")


def test_a_child_that_aborts_is_crashed_and_replaced() -> None:
    with pool("abort_on_marker") as render_pool:
        render_pool.render(GOOD)
        error = failure(render_pool, b"ABORT")
        assert (error.status, error.error_class) == (Status.CRASHED, "SIGABRT")
        assert render_pool.render(GOOD).page_count == 1


def test_a_child_past_the_timeout_is_killed_and_replaced() -> None:
    with pool("sleep_on_marker", timeout_seconds=0.5) as render_pool:
        error = failure(render_pool, b"SLEEP")
        assert error.status is Status.TIMEOUT and "0.5s" in error.message
        assert render_pool.render(GOOD).page_count == 1


def test_a_child_past_its_memory_cap_is_too_large_and_replaced() -> None:
    with pool("allocate_on_marker", memory_bytes=300 << 20) as render_pool:
        error = failure(render_pool, b"ALLOCATE")
        assert (error.status, error.error_class) == (Status.TOO_LARGE, "MemoryLimit")
        assert render_pool.render(GOOD).page_count == 1


def test_a_childs_start_up_counts_against_no_documents_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THUMBS_TEST_START_SECONDS", "1.5")
    with pool("abort_on_marker", timeout_seconds=1.0) as render_pool:
        assert render_pool.render(GOOD).page_count == 1


def test_a_child_that_dies_while_starting_is_reported_by_the_next_render() -> None:
    with pool("abort_on_marker") as render_pool:
        render_pool.entry = "tests.faults:no_such_entry"  # the child fails to import it and exits
        render_pool.prepare()
        error = failure(render_pool, GOOD)
        assert (error.status, error.error_class) == (Status.CRASHED, "Exit1")
        render_pool.entry = "tests.faults:abort_on_marker"
        assert render_pool.render(GOOD).page_count == 1


def test_children_are_recycled_after_a_number_of_documents() -> None:
    with pool("abort_on_marker", recycle_after=2) as render_pool:
        pids = []
        for _ in range(5):
            render_pool.render(GOOD)
            child = render_pool._children[0]
            assert child is not None
            pids.append(child.process.pid)
    assert len(set(pids)) == 3 and pids[0] == pids[1] != pids[2] == pids[3] != pids[4]


def test_children_stay_under_an_address_space_limit_they_inherit() -> None:
    # Spark's spark.executor.pyspark.memory puts such a limit on Python workers; a child asking
    # for more than it inherited would fail to start and every document would end as crashed.
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
        "from tests.pdfs import Page, build_pdf\n"
        "from thumbs.isolation import RenderPool\n"
        "from thumbs.options import RenderOptions\n"
        "with RenderPool(RenderOptions()) as pool:\n"
        "    print(pool.render(build_pdf([Page()])).page_count)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "1", done.stderr[-2000:]
