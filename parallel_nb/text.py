"""Untrusted text (anything that came from the web or the service) made fit for plain-text
output: cut to a length, one line, no control or bidirectional-override characters.

It is shared by the views and by the errors the API raises, so a service message can neither
rewrite a terminal (escape sequences, carriage returns) nor reorder what is shown around it.
"""

from __future__ import annotations

import unicodedata

__all__ = ["ELLIPSIS", "plain", "truncate", "without_bidi_controls"]

ELLIPSIS = "…"
# Bidirectional controls (embeddings, overrides, isolates, marks). Removed from plain text,
# where nothing can isolate them, and from markup too: <bdi> keeps an override from leaking out
# of the text, but not from reversing the text itself ("\u202eevil" would read "live").
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def truncate(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` characters, ending in "…" when it was cut."""
    if len(text) <= max_chars:
        return text
    return text[: max(0, max_chars - 1)].rstrip() + ELLIPSIS


def without_bidi_controls(text: str) -> str:
    """``text`` without bidirectional control characters (right-to-left letters stay)."""
    return "".join(ch for ch in text if ch not in _BIDI_CONTROLS)


def plain(text: object, max_chars: int) -> str:
    """Untrusted text for a plain-text view: one line, no control or bidi characters, cut."""
    if text is None:
        return ""
    cleaned = "".join(
        " " if unicodedata.category(ch) == "Cc" else ch for ch in without_bidi_controls(str(text))
    )
    return truncate(" ".join(cleaned.split()), max_chars)
