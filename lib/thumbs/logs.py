"""Logging for operators: one line per event, greppable, with run, batch and document named."""

from __future__ import annotations

import logging
import os
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging(level: str | None = None) -> None:
    """Send the `thumbs` loggers to stderr once per process (driver or Python worker)."""
    root = logging.getLogger("thumbs")
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(level or os.environ.get("THUMBS_LOG_LEVEL", "INFO"))
    root.propagate = False
    # pypdfium2 warns through its logger about XFA forms this build cannot draw (see README).
    logging.getLogger("pypdfium2").setLevel(logging.ERROR)
