"""One-line error summaries for logs, run errors and JSON bodies (api/ and worker/ share them)."""

from __future__ import annotations

MAX_CHARS = 300


def one_line(exc: BaseException, limit: int = MAX_CHARS, with_type: bool = False) -> str:
    """`exc`'s message on one line (whitespace collapsed), at most `limit` characters.

    An empty message gives the exception's type name; `with_type` puts "Type: " in front.
    """
    text = " ".join(str(exc).split())
    if with_type or not text:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
