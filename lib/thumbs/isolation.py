"""Render in child processes, so no PDF can crash, hang or balloon the Spark Python worker.

pdfium is native code: a hostile file can crash the process, loop for minutes or allocate
gigabytes. `RenderPool` keeps a few long-lived child processes (started once per Python worker,
not once per document) and sends each document to one of them over a pipe. The parent watches
the clock and the child's resident memory; a child that dies, overruns the timeout or grows past
the memory cap is killed and replaced, and the document gets a `crashed`, `timeout` or
`too_large` status saying what was seen. Children are also replaced after `recycle_after`
documents, to bound slow leaks.

Wire protocol: frames of an 8-byte big-endian length and a body. The parent's first frame is the
pickled `RenderOptions`; the child answers with an empty frame once it has imported the renderer,
so a child's start-up is charged to no document's time or timeout. Then the parent sends one
frame per document holding the PDF bytes as they are, and the child answers each with a pickle
of `("ok", Rendering)` or `("error", status, message, class)`.
The child's standard output is reserved for the protocol; anything pdfium prints goes to stderr.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from thumbs.options import RenderOptions
from thumbs.render import Rendering
from thumbs.status import DocumentError, Status

log = logging.getLogger("thumbs.isolation")

DEFAULT_ENTRY = "thumbs.render:render_document"
_HEADER = struct.Struct(">Q")
_POLL_SECONDS = 0.05
_STARTUP_SECONDS = 60.0
"""How long a new child may take to import the renderer and say it is ready."""
_ADDRESS_SPACE_FACTOR = 3
"""The child's hard address-space limit, as a multiple of the resident cap: a backstop for
allocations too fast for the watchdog to see. pdfium reserves address space generously, so a
tighter limit would abort documents that fit the resident cap comfortably."""


class RenderPool:
    """A small pool of render children with a timeout and a memory cap per document."""

    def __init__(self, options: RenderOptions, *, size: int = 1, entry: str = DEFAULT_ENTRY) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self.options = options
        self.entry = entry
        self._children: list[_Child | None] = [None] * size
        self._next = 0

    def prepare(self) -> None:
        """Start (or recycle) the child the next document goes to, and wait until it is ready.

        Callers that time documents call this first, so a child's start-up is no document's
        render time. A child that fails to start is kept: the next `render` reports it.
        """
        try:
            self._next_child().wait_ready()
        except _ChildLost:
            pass

    def render(self, data: bytes) -> Rendering:
        """Render one document in a child; raises `DocumentError` for every failure."""
        slot = self._next
        child = self._next_child()
        self._next = (slot + 1) % len(self._children)
        try:
            return child.render(data)
        except _ChildLost as lost:
            self._children[slot] = None
            raise lost.error from None

    def __call__(self, data: bytes) -> Rendering:
        return self.render(data)

    def _next_child(self) -> _Child:
        child = self._children[self._next]
        if child is None or child.handled >= self.options.limits.recycle_after:
            if child is not None:
                child.close()
            child = _Child(self.entry, self.options)
            self._children[self._next] = child
        return child

    def close(self) -> None:
        for child in self._children:
            if child is not None:
                child.close()
        self._children = [None] * len(self._children)

    def __enter__(self) -> RenderPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ChildLost(Exception):
    """The child is gone (crashed, killed for time or memory); carries the document's error."""

    def __init__(self, error: DocumentError) -> None:
        super().__init__(error.message)
        self.error = error


class _Child:
    def __init__(self, entry: str, options: RenderOptions) -> None:
        self.options = options
        self.memory_bytes = options.limits.memory_bytes
        self.handled = 0
        self._ready = False
        self._startup_failure: _ChildLost | None = None
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        address_space = self.memory_bytes * _ADDRESS_SPACE_FACTOR
        self.process = subprocess.Popen(
            [sys.executable, "-m", "thumbs.isolation", entry, str(address_space)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=environment,
            close_fds=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._to_child: IO[bytes] = self.process.stdin
        self._from_child = self.process.stdout.fileno()
        log.info("render child started pid=%d worker_pid=%d", self.process.pid, os.getpid())
        self._rss_path = f"/proc/{self.process.pid}/statm"
        self._page_size = os.sysconf("SC_PAGE_SIZE")
        self._send(pickle.dumps(options, protocol=pickle.HIGHEST_PROTOCOL))

    def _send(self, body: bytes) -> None:
        self._to_child.write(_HEADER.pack(len(body)))
        self._to_child.write(body)
        self._to_child.flush()

    def wait_ready(self) -> None:
        """Wait for the child's ready frame; a child that dies or stalls at start-up is lost."""
        if self._startup_failure is not None:
            raise self._startup_failure
        if self._ready:
            return
        started = time.monotonic()
        try:
            body = self._read_frame(started + _STARTUP_SECONDS)
            if body is None:
                self.kill()
                raise _ChildLost(
                    DocumentError(
                        Status.CRASHED,
                        f"the render child did not start within {_STARTUP_SECONDS:g}s",
                        "StartupTimeout",
                    )
                )
        except _ChildLost as lost:
            self._startup_failure = lost
            raise
        self._ready = True

    def render(self, data: bytes) -> Rendering:
        self.wait_ready()
        self.handled += 1
        started = time.monotonic()
        try:
            self._send(data)
        except (BrokenPipeError, OSError):
            raise self._lost(started) from None
        body = self._read_frame(started + self.options.limits.timeout_seconds)
        if body is None:
            self.kill()
            raise _ChildLost(
                DocumentError(
                    Status.TIMEOUT,
                    f"rendering took longer than {self.options.limits.timeout_seconds:g}s",
                    "RenderTimeout",
                )
            )
        answer: tuple[Any, ...] = pickle.loads(body)
        if answer[0] == "ok":
            return answer[1]  # type: ignore[no-any-return]
        _, status, message, error_class = answer
        raise DocumentError(Status(status), message, error_class)

    def _read_frame(self, deadline: float) -> bytearray | None:
        """The child's next frame body, or None past the deadline; watches memory meanwhile."""
        started = time.monotonic()
        buffer = bytearray()
        needed = _HEADER.size
        while len(buffer) < needed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self._from_child], [], [], min(remaining, _POLL_SECONDS))
            if not ready:
                self._check_memory()
                continue
            chunk = os.read(self._from_child, max(needed - len(buffer), 1 << 16))
            if not chunk:
                raise self._lost(started)
            buffer += chunk
            if needed == _HEADER.size and len(buffer) >= _HEADER.size:
                needed += _HEADER.unpack_from(buffer)[0]
        return buffer[_HEADER.size :]

    def _check_memory(self) -> None:
        try:
            with open(self._rss_path, "rb") as statm:
                resident = int(statm.read().split()[1]) * self._page_size
        except (OSError, ValueError, IndexError):
            return
        if resident > self.memory_bytes:
            self.kill()
            raise _ChildLost(
                DocumentError(
                    Status.TOO_LARGE,
                    f"the render child reached {resident >> 20} MiB, over the memory cap of "
                    f"{self.memory_bytes >> 20} MiB",
                    "MemoryLimit",
                )
            )

    def _lost(self, started: float) -> _ChildLost:
        code = self.process.wait()
        seconds = time.monotonic() - started
        if code < 0:
            name = signal.Signals(-code).name
            message = f"the render child died of {name} after {seconds:.2f}s"
            if name == "SIGABRT":
                message += " (pdfium aborts like this when it cannot allocate memory)"
            return _ChildLost(DocumentError(Status.CRASHED, message, name))
        return _ChildLost(
            DocumentError(Status.CRASHED, f"the render child exited with {code}", f"Exit{code}")
        )

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def close(self) -> None:
        """Ask the child to finish (end of input), and kill it if it does not."""
        try:
            self._to_child.close()
            self.process.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()


def _serve(entry: str, address_space: int) -> None:
    """The child's loop: read a document, render it, answer; exit at end of input."""
    import resource

    # Never above a limit the child inherited (Spark's spark.executor.pyspark.memory sets one on
    # Python workers): an unprivileged process cannot raise its hard limit.
    _, inherited = resource.getrlimit(resource.RLIMIT_AS)
    if inherited != resource.RLIM_INFINITY:
        address_space = min(address_space, inherited)
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints from native code must not corrupt the protocol
    requests = sys.stdin.buffer
    module, _, name = entry.partition(":")
    render: Callable[[bytes, RenderOptions], Rendering] = getattr(importlib.import_module(module), name)
    logging.getLogger("pypdfium2").setLevel(logging.ERROR)
    options = pickle.loads(requests.read(_HEADER.unpack(requests.read(_HEADER.size))[0]))
    answers.write(_HEADER.pack(0))  # ready: what follows is rendering time
    answers.flush()
    while header := requests.read(_HEADER.size):
        data = requests.read(_HEADER.unpack(header)[0])
        answer = _answer(render, data, options)
        payload = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        answers.write(_HEADER.pack(len(payload)) + payload)
        answers.flush()


def _answer(
    render: Callable[[bytes, RenderOptions], Rendering], data: bytes, options: RenderOptions
) -> tuple[Any, ...]:
    try:
        return ("ok", render(data, options))
    except DocumentError as error:
        return ("error", error.status.value, error.message, error.error_class)
    except MemoryError:
        return ("error", Status.TOO_LARGE.value, "the render child ran out of memory", "MemoryError")
    except Exception as error:  # noqa: BLE001 - reported as a row by the parent
        return ("error", Status.INTERNAL_ERROR.value, str(error), type(error).__name__)


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]))
