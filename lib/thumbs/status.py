"""The outcome taxonomy: every status a result row can carry, shared by both jobs.

A status is the one word an operator filters on. Each carries whether a later run retries it and
what a person should do about it, so the README table, the jobs' skip logic and the data-quality
checks all read from this one list.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Status(str, Enum):
    """What happened to one document version."""

    OK = "ok"
    DELETED = "deleted"
    PASSWORD_REQUIRED = "password_required"
    UNSUPPORTED_SECURITY = "unsupported_security"
    CORRUPT = "corrupt"
    INVALID_PAGE = "invalid_page"
    NOT_PDF = "not_pdf"
    TOO_LARGE = "too_large"
    MISSING = "missing"
    ACCESS_DENIED = "access_denied"
    INVALID_KEY = "invalid_key"
    TIMEOUT = "timeout"
    CRASHED = "crashed"
    FAILED_TRANSIENT = "failed_transient"
    INTERNAL_ERROR = "internal_error"

    def __str__(self) -> str:
        return self.value


SUCCESS = frozenset({Status.OK.value, Status.DELETED.value})
"""Statuses that are not failures; every other status counts as one in alerts and checks."""


@dataclass(frozen=True)
class StatusInfo:
    """How a status comes about, whether it is retried, and what an operator does about it."""

    cause: str
    retried: bool
    action: str


STATUS_INFO: dict[Status, StatusInfo] = {
    Status.OK: StatusInfo(
        "Every requested page was rendered and every thumbnail uploaded.",
        False,
        "Nothing.",
    ),
    Status.DELETED: StatusInfo(
        "The source was deleted (an ObjectRemoved event); its thumbnails were removed.",
        False,
        "Nothing.",
    ),
    Status.PASSWORD_REQUIRED: StatusInfo(
        "The PDF is encrypted with a user password.",
        False,
        "Ask the owner for an unencrypted copy; a new upload is a new version and is rendered.",
    ),
    Status.UNSUPPORTED_SECURITY: StatusInfo(
        "The PDF uses a security handler pdfium does not implement.",
        False,
        "Ask the owner for a copy without that protection.",
    ),
    Status.CORRUPT: StatusInfo(
        "pdfium could not parse the file or a page of it.",
        False,
        "Open the file in a viewer; re-export it from its source if it is damaged.",
    ),
    Status.INVALID_PAGE: StatusInfo(
        "A page has a zero, negative or absurd size, so no bitmap can be made of it.",
        False,
        "Re-export the document; the page box is broken.",
    ),
    Status.NOT_PDF: StatusInfo(
        "The object does not start with a PDF header within its first 1024 bytes.",
        False,
        "Check what the uploader sends; such objects should not carry a .pdf name.",
    ),
    Status.TOO_LARGE: StatusInfo(
        "The source exceeds the byte limit (checked before download) or a page bitmap would exceed "
        "the pixel limit.",
        False,
        "Raise the limit for this run if the document matters, or leave it unrendered.",
    ),
    Status.MISSING: StatusInfo(
        "The object was gone, or had changed version, when the executor fetched it.",
        False,
        "Usually nothing: it was deleted or replaced, and a replacement is a new version.",
    ),
    Status.ACCESS_DENIED: StatusInfo(
        "S3 refused to read the source or to write a thumbnail (403).",
        True,
        "Fix the IAM policy or bucket policy, then run the backfill again.",
    ),
    Status.INVALID_KEY: StatusInfo(
        "The thumbnail key computed from the source key would exceed S3's 1024-byte key limit.",
        False,
        "Shorten the source key or the destination prefix.",
    ),
    Status.TIMEOUT: StatusInfo(
        "Rendering took longer than the per-document timeout; the render child was killed.",
        False,
        "Raise the timeout for a run if the document matters; it is often a hostile file.",
    ),
    Status.CRASHED: StatusInfo(
        "The render child died (a signal such as SIGSEGV or SIGABRT) inside pdfium.",
        False,
        "Keep the file as a pdfium bug reproduction; the rest of the batch was unaffected.",
    ),
    Status.FAILED_TRANSIENT: StatusInfo(
        "S3 throttling, a 5xx or a timeout persisted after the SDK's retries.",
        True,
        "Nothing if rare: the next backfill run retries it. If frequent, lower the parallelism.",
    ),
    Status.INTERNAL_ERROR: StatusInfo(
        "An unexpected error inside this project's code.",
        True,
        "A bug: report the error class and message with the document.",
    ),
}

FINAL_STATUSES: frozenset[Status] = frozenset(s for s, info in STATUS_INFO.items() if not info.retried)
"""Statuses a later run does not retry: the document version is done, well or badly."""

FAILURE_STATUSES: frozenset[Status] = frozenset(Status) - {Status.OK, Status.DELETED}


class DocumentError(Exception):
    """A document-level failure with the status it maps to and the technical cause."""

    def __init__(self, status: Status, message: str, error_class: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_class = error_class or status.value
