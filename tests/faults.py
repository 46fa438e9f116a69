"""Render entry points that misbehave on purpose, run inside render children by the tests."""

from __future__ import annotations

import os
import time

from thumbs.options import RenderOptions
from thumbs.render import Rendering, render_document

# A child that is slow to start, as on a loaded executor: the pause is at import, before the child
# says it is ready.
time.sleep(float(os.environ.get("THUMBS_TEST_START_SECONDS", "0")))


def abort_on_marker(data: bytes, options: RenderOptions) -> Rendering:
    """Dies of SIGABRT, as pdfium does on a failed check, when the data says ABORT."""
    if data.startswith(b"ABORT"):
        os.abort()
    return render_document(data, options)


def sleep_on_marker(data: bytes, options: RenderOptions) -> Rendering:
    """Hangs far past any timeout when the data says SLEEP."""
    if data.startswith(b"SLEEP"):
        time.sleep(3600)
    return render_document(data, options)


def allocate_on_marker(data: bytes, options: RenderOptions) -> Rendering:
    """Touches memory steadily, 16 MiB at a time, when the data says ALLOCATE."""
    if data.startswith(b"ALLOCATE"):
        hoard = []
        while True:
            hoard.append(bytearray(b"x") * (16 << 20))
            time.sleep(0.005)
    return render_document(data, options)
