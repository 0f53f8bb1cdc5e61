"""The only place where text from the web becomes markup: escaped HTML and plain text for views.

Everything a run brings back (titles, excerpts, reasoning, output values, URLs, messages, error
texts) is untrusted. Here it is cut to a display length *before* escaping (so no entity is ever
split), escaped with ``html.escape(quote=True)``, wrapped in ``<bdi>`` so right-to-left text
or a stray U+202E cannot flip the layout around it, and only http(s) URLs with a host become
links. Styles are inline and use JupyterLab's CSS variables with fallbacks that read on both
light and dark backgrounds, so the markup also works in saved notebooks and other front ends.
"""

from __future__ import annotations

import html
import json
import unicodedata
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from parallel_nb.view.frames import output_rows

from ..text import plain as text_plain
from ..text import truncate, without_bidi_controls

if TYPE_CHECKING:
    from parallel_nb.api.models import FieldBasis, TaskOutput
    from parallel_nb.result import TaskResult
    from parallel_nb.runs.batch_state import BatchState
    from parallel_nb.runs.state import RunState

__all__ = [
    "MAX_LINK_TEXT",
    "MAX_TEXT",
    "MAX_URL_LENGTH",
    "MAX_VALUE",
    "batch_failures_html",
    "batch_header_html",
    "batch_html",
    "batch_preview_html",
    "batch_rate_html",
    "escape",
    "footer_html",
    "header_html",
    "link",
    "messages_html",
    "plain",
    "progress_html",
    "result_html",
    "result_text",
    "safe_url",
    "snippet",
    "sources_html",
    "state_html",
    "state_text",
    "truncate",
]

MAX_TEXT = 300
"""Characters of a message, reasoning, excerpt or error shown before the ellipsis."""
MAX_VALUE = 1000
"""Characters of an output value shown in the result table."""
MAX_LINK_TEXT = 80
"""Characters of a link's visible text."""
MAX_URL_LENGTH = 4096
"""Longer URLs are not linked: no real citation needs more, and the markup stays small."""

_SAFE_SCHEMES = frozenset({"http", "https"})
_LINK_ATTRS = (
    'target="_blank" rel="noopener noreferrer nofollow" '
    'style="color:var(--jp-content-link-color, #3d8bfd)"'
)

# Colours: JupyterLab variables first; the fallbacks are mid-tones legible on light and dark.
_BORDER = "var(--jp-border-color2, rgba(128, 128, 128, 0.35))"
_MUTED = "opacity:0.75"
_ERROR_COLOR = "var(--jp-error-color1, #d32f2f)"
_WARN_COLOR = "var(--jp-warn-color1, #e65100)"
# The inverse of the theme's text colour: white on the light theme's dark badges, dark on the
# dark theme's light ones (white there fell below 3:1 contrast).
_BADGE_TEXT = "var(--jp-ui-inverse-font-color0, #fff)"
_STATUS_COLORS = {
    "creating": "var(--jp-layout-color4, #757575)",
    "queued": "var(--jp-layout-color4, #757575)",
    "running": "var(--jp-brand-color1, #1976d2)",
    "cancelling": _WARN_COLOR,
    "completed": "var(--jp-success-color1, #2e7d32)",
    "failed": _ERROR_COLOR,
    "error": _ERROR_COLOR,
    "cancelled": _WARN_COLOR,
    "interrupted": _WARN_COLOR,
}
# Long URLs and unbroken strings wrap instead of widening the output area. The widget panels
# show their parts without this container, so the parts that carry long text repeat the rule.
_WRAP = "overflow-wrap:anywhere"
_CONTAINER = (
    "font-family:var(--jp-ui-font-family, system-ui, -apple-system, 'Segoe UI', sans-serif);"
    f"font-size:var(--jp-ui-font-size1, 13px);line-height:1.45;color:inherit;max-width:100%;{_WRAP}"
)
_TABLE = "border-collapse:collapse;margin:4px 0 8px 0;max-width:100%"
# JupyterLab right-aligns table cells; answers read better left-aligned.
_CELL = "text-align:left;vertical-align:top;padding:2px 8px"
_NOWRAP = "white-space:nowrap"
_ROW = f"border-bottom:1px solid {_BORDER}"


# -- primitives ----------------------------------------------------------------------------


def escape(text: object) -> str:
    """``text`` as HTML-safe characters (quotes too, so it is safe in attributes); None is ""."""
    return "" if text is None else html.escape(str(text), quote=True)


def snippet(text: object, max_chars: int = MAX_TEXT) -> str:
    """Untrusted text as markup: cut for display, escaped, isolated for bidi, and without bidi
    controls (an override inside the isolate would still reverse the text)."""
    if text is None:
        return ""
    return f"<bdi>{escape(truncate(without_bidi_controls(str(text)), max_chars))}</bdi>"


def plain(text: object, max_chars: int = MAX_TEXT) -> str:
    """Untrusted text for a plain-text view: one line, no control or bidi characters, cut."""
    return text_plain(text, max_chars)


def safe_url(url: object) -> str | None:
    """``url`` if it is an http(s) URL with a host, else None (never a ``javascript:`` link).

    Browsers ignore tabs and newlines inside URLs (``java\\tscript:``), so any control,
    whitespace or invisible formatting character rejects the URL, as do credentials in it
    (``https://bank.com@evil.example`` would show one host and open another).
    """
    if not isinstance(url, str):
        return None
    candidate = url.strip()
    if not candidate or len(candidate) > MAX_URL_LENGTH:
        return None
    if any(unicodedata.category(ch)[0] in "CZ" for ch in candidate):
        return None
    try:
        parts = urlsplit(candidate)
        host = parts.hostname
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return None
    if parts.scheme.lower() not in _SAFE_SCHEMES or not host or "@" in parts.netloc:
        return None
    return candidate


def link(url: object, text: object = None, *, max_chars: int = MAX_LINK_TEXT) -> str:
    """A link that opens in a new tab, or just the escaped text when ``url`` is not safe.

    Without ``text`` the URL itself (minus its scheme) is the visible text.
    """
    href = safe_url(url)
    label = text if text not in (None, "") else _url_label(href or url)
    if href is None:
        return snippet(label, max_chars)
    return (
        f'<a href="{escape(href)}" {_LINK_ATTRS} title="{escape(truncate(href, MAX_TEXT))}">'
        f"{snippet(label, max_chars)}</a>"
    )


def _url_label(url: object) -> str:
    text = "" if url is None else str(url).strip()
    for prefix in ("https://", "http://"):
        if text.lower().startswith(prefix):
            return text[len(prefix) :].removeprefix("www.").rstrip("/")
    return text


def _badge(status: str) -> str:
    color = _STATUS_COLORS.get(status, "var(--jp-layout-color4, #757575)")
    return (
        f'<span style="display:inline-block;padding:0 7px;border-radius:9px;'
        f'color:{_BADGE_TEXT};background:{color};font-size:0.85em;font-weight:600">'
        f"{snippet(status, 40)}</span>"
    )


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _percent(progress: float | None) -> str:
    return "" if progress is None else f"{progress:.0f}%"


def _progress_text(progress: float | None) -> str:
    return "" if progress is None else f"progress {_percent(progress)}"


def _div(content: str, style: str = "") -> str:
    return f'<div style="{style}">{content}</div>' if style else f"<div>{content}</div>"


# -- the live run --------------------------------------------------------------------------


def header_html(state: RunState) -> str:
    """Title line: processor, status badge and elapsed time."""
    parts = ["<strong>Parallel</strong>", snippet(state.processor, 40), _badge(state.status)]
    elapsed = state.elapsed
    if elapsed is not None:
        parts.append(f'<span style="{_MUTED}">{_clock(elapsed)}</span>')
    return _div(" · ".join(parts))


def progress_html(state: RunState) -> str:
    """A progress bar drawn with divs (the widget panel uses a FloatProgress instead)."""
    if state.progress is None:
        return ""
    width = f"{min(100.0, max(0.0, state.progress)):.1f}"
    color = _STATUS_COLORS.get(state.status, _STATUS_COLORS["running"])
    bar = (
        f'<div style="flex:1;height:6px;border-radius:3px;overflow:hidden;'
        f'background:var(--jp-layout-color3, rgba(128, 128, 128, 0.25))">'
        f'<div style="width:{width}%;height:100%;background:{color}"></div>'
        f"</div>"
    )
    label = f'<span style="{_MUTED};min-width:3em">{_percent(state.progress)}</span>'
    return _div(bar + label, "display:flex;align-items:center;gap:8px;margin:4px 0")


def sources_html(state: RunState, *, max_links: int = 3) -> str:
    """Source counts and up to ``max_links`` of the sampled sources as links."""
    counts = _source_counts(state)
    if not counts and not state.sources_sample:
        return ""
    links = " · ".join(link(url) for url in state.sources_sample[:max_links])
    return _div(" · ".join(p for p in (escape(counts), links) if p), _MUTED)


def _source_counts(state: RunState) -> str:
    if state.sources_read is None and state.sources_considered is None:
        return ""
    read = "?" if state.sources_read is None else str(state.sources_read)
    if state.sources_considered is None:
        return f"sources read {read}"
    return f"sources read {read} of {state.sources_considered} considered"


def messages_html(state: RunState, *, limit: int = 6, max_chars: int = MAX_TEXT) -> str:
    """The newest ``limit`` progress messages, one per line, kind first."""
    recent = state.messages[-limit:] if limit > 0 else ()
    lines = [
        _div(f'<span style="{_MUTED}">{snippet(kind, 20)}</span> {snippet(text, max_chars)}')
        for kind, text, _ in recent
    ]
    return _div("".join(lines), f"margin:2px 0;{_WRAP}") if lines else ""


def footer_html(state: RunState, *, max_chars: int = MAX_TEXT) -> str:
    """Warnings, the error, a local note and the run id."""
    lines = [
        _div(f"warning: {snippet(w, max_chars)}", f"color:{_WARN_COLOR}") for w in state.warnings
    ]
    if state.error:
        lines.append(_div(f"error: {snippet(state.error, max_chars)}", f"color:{_ERROR_COLOR}"))
    if state.note:
        lines.append(_div(snippet(state.note, max_chars), _MUTED))
    if state.run_id:
        run_id = f"run <code>{snippet(state.run_id, MAX_LINK_TEXT)}</code>"
        lines.append(_div(run_id, f"{_MUTED};font-size:0.9em"))
    return _div("".join(lines), _WRAP) if lines else ""


def state_html(state: RunState, *, max_messages: int = 6, max_chars: int = MAX_TEXT) -> str:
    """The whole live panel as one HTML fragment (the fallback when widgets are unavailable)."""
    body = (
        header_html(state)
        + progress_html(state)
        + sources_html(state)
        + messages_html(state, limit=max_messages, max_chars=max_chars)
        + footer_html(state, max_chars=max_chars)
    )
    return f'<div class="parallel-nb-run" style="{_CONTAINER}">{body}</div>'


def state_text(state: RunState, *, max_messages: int = 3, max_chars: int = 120) -> str:
    """The live panel as plain text; the same state always gives the same text (no clock)."""
    head = f"Parallel · {plain(state.processor)} · {plain(state.status)}"
    lines = [head + (f" · run {plain(state.run_id)}" if state.run_id else "")]
    progress = " · ".join(p for p in (_progress_text(state.progress), _source_counts(state)) if p)
    if progress:
        lines.append(progress)
    recent = state.messages[-max_messages:] if max_messages > 0 else ()
    lines += [f"[{plain(kind, 20)}] {plain(text, max_chars)}" for kind, text, _ in recent]
    lines += [f"warning: {plain(w, max_chars)}" for w in state.warnings]
    if state.error:
        lines.append(f"error: {plain(state.error, max_chars)}")
    if state.note:
        lines.append(plain(state.note, max_chars))
    return "\n".join(lines)


# -- the result ----------------------------------------------------------------------------


def result_html(
    result: TaskResult,
    *,
    max_rows: int = 100,
    max_chars: int = MAX_VALUE,
    max_citations: int = 3,
    basis: bool = True,
    stored_in: str | None = None,
) -> str:
    """Summary line, output table and (unless ``basis`` is False) basis table of a finished run.

    ``stored_in`` names the variable holding the result, so a note can point at its tables
    instead of repeating them.
    """
    output = result.task_output
    parts = [_summary_html(result)]
    if output is not None:
        parts.append(_output_table(output, max_rows, max_chars))
        if basis:
            parts.append(_basis_table(output.basis, max_rows, max_citations))
    if stored_in is not None:
        name = escape(stored_in)
        parts.append(
            _div(
                f"stored in <code>{name}</code>: citations, reasoning and confidence per field "
                f"in <code>{name}.basis_df</code>, the answer in <code>{name}.output_df</code>",
                _MUTED,
            )
        )
    return f'<div class="parallel-nb-result" style="{_CONTAINER}">{"".join(parts)}</div>'


def _summary_html(result: TaskResult) -> str:
    run = result.run
    parts = ["<strong>Parallel</strong>", snippet(run.processor, 40), _badge(run.status)]
    if result.cached:
        parts.append(_badge_plain("cached"))
    counts = _result_counts(result)
    if counts:
        parts.append(f'<span style="{_MUTED}">{escape(counts)}</span>')
    run_id = snippet(run.run_id, MAX_LINK_TEXT)
    parts.append(f'<span style="{_MUTED}">run <code>{run_id}</code></span>')
    lines = [_div(" · ".join(parts), "margin-bottom:4px")]
    lines += [_div(f"warning: {snippet(w.message)}", f"color:{_WARN_COLOR}") for w in run.warnings]
    if run.error is not None:
        lines.append(_div(f"error: {snippet(run.error.message)}", f"color:{_ERROR_COLOR}"))
    return "".join(lines)


def _badge_plain(text: str) -> str:
    return (
        f'<span style="display:inline-block;padding:0 7px;border-radius:9px;'
        f'border:1px solid {_BORDER};font-size:0.85em">{escape(text)}</span>'
    )


def _result_counts(result: TaskResult) -> str:
    output = result.task_output
    if output is None:
        return ""
    fields = len(output.content) if isinstance(output.content, dict) else 1
    citations = sum(len(b.citations) for b in output.basis)
    return f"{_plural(fields, 'field')} · {_plural(citations, 'citation')}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _table(columns: Sequence[tuple[str, str]], rows: Iterable[Iterable[str]]) -> str:
    """A table from (header, extra cell style) columns and cells that are already markup."""
    head = "".join(f'<th style="{_CELL};{_NOWRAP}">{escape(name)}</th>' for name, _ in columns)
    body = "".join(
        f'<tr style="{_ROW}">'
        + "".join(
            f'<td style="{_CELL};{style}">{cell}</td>'
            for (_, style), cell in zip(columns, row, strict=True)
        )
        + "</tr>"
        for row in rows
    )
    return (
        f'<table style="{_TABLE}"><thead><tr style="{_ROW}">{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def _more(hidden: int, where: str) -> str:
    if hidden <= 0:
        return ""
    return _div(f"… {hidden} more rows in <code>{escape(where)}</code>", _MUTED)


def _output_table(output: TaskOutput, max_rows: int, max_chars: int) -> str:
    rows = output_rows(output)
    cells = [
        (
            _field_html(row.field),
            _value_html(row.value, max_chars),
            f'<span style="{_MUTED}">{escape(row.type)}</span>',
        )
        for row in rows[:max_rows]
    ]
    columns = (("field", ""), ("value", "min-width:12em"), ("type", _NOWRAP))
    return _table(columns, cells) + _more(len(rows) - max_rows, ".output_df")


def _field_html(path: str) -> str:
    """A field's dot path, allowed to wrap after its dots (and nowhere else)."""
    escaped = escape(truncate(path, MAX_LINK_TEXT))
    return f'<code style="overflow-wrap:normal"><bdi>{escaped.replace(".", ".<wbr>")}</bdi></code>'


def _value_html(value: Any, max_chars: int) -> str:
    if isinstance(value, str):
        if safe_url(value) is not None:
            return link(value, value, max_chars=max_chars)
        # pre-wrap keeps the line breaks of text answers (markdown reports).
        return f'<span style="white-space:pre-wrap">{snippet(value, max_chars)}</span>'
    return snippet(json.dumps(value, ensure_ascii=False, default=str), max_chars)


def _basis_table(basis: tuple[FieldBasis, ...], max_rows: int, max_citations: int) -> str:
    if not basis:
        return ""
    cells = [
        (
            _field_html(entry.field),
            snippet(entry.confidence, 20),
            snippet(entry.reasoning),
            _citations_html(entry, max_citations),
        )
        for entry in basis[:max_rows]
    ]
    columns = (
        ("field", ""),
        ("confidence", _NOWRAP),
        ("reasoning", "min-width:12em"),
        ("sources", "min-width:14em"),
    )
    table = _table(columns, cells)
    return table + _more(len(basis) - max_rows, ".basis_df")


def _citations_html(entry: FieldBasis, max_citations: int) -> str:
    items = []
    for citation in entry.citations[:max_citations]:
        excerpt = " … ".join(citation.excerpts)
        note = _div(snippet(excerpt, MAX_TEXT), f"{_MUTED};font-size:0.9em") if excerpt else ""
        items.append(_div(link(citation.url, citation.title) + note, "margin-bottom:2px"))
    hidden = len(entry.citations) - max_citations
    if hidden > 0:
        items.append(_div(f"+{hidden} more", _MUTED))
    return "".join(items)


def result_text(result: TaskResult, *, max_rows: int = 20, max_chars: int = 60) -> str:
    """Deterministic, secret-free text: a one-line summary and an aligned ``field  value`` table."""
    run = result.run
    output = result.task_output
    fields = citations = 0
    if output is not None:
        fields = len(output.content) if isinstance(output.content, dict) else 1
        citations = sum(len(b.citations) for b in output.basis)
    head = (
        f"TaskResult(run_id={run.run_id!r}, status={run.status!r}, "
        f"processor={run.processor!r}, fields={fields}, citations={citations})"
    )
    lines = [head]
    if run.error is not None:
        lines.append(f"error: {plain(run.error.message, MAX_TEXT)}")
    if output is None:
        return "\n".join(lines)
    rows = output_rows(output)
    shown = [
        (plain(row.field, 30), plain(_value_text(row.value), max_chars)) for row in rows[:max_rows]
    ]
    width = max((len(name) for name, _ in shown), default=0)
    lines += [f"  {name.ljust(width)}  {value}" for name, value in shown]
    if len(rows) > max_rows:
        lines.append(f"  … {len(rows) - max_rows} more rows in .output_df")
    return "\n".join(lines)


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


# -- the live batch ------------------------------------------------------------------------


def batch_header_html(state: BatchState) -> str:
    """Title line: ended runs of all, then the group's count of runs by status."""
    counts = " · ".join(f"{_badge(status)} {count}" for status, count in state.status_counts)
    done = f"{state.finished} of {state.runs} runs ended"
    parts = ["<strong>Parallel batch</strong>", escape(done)]
    return _div(" · ".join(p for p in (*parts, counts) if p))


def batch_rate_html(state: BatchState) -> str:
    """Throughput and the estimated time left, once a run has ended."""
    rate, eta = state.throughput, state.eta
    if rate is None:
        return _div("waiting for the first run to end", _MUTED)
    left = "" if eta is None or state.finished >= state.runs else f" · about {_clock(eta)} left"
    return _div(escape(f"{rate:.2f} runs/s{left}"), _MUTED)


def batch_failures_html(state: BatchState, *, max_chars: int = MAX_TEXT) -> str:
    """The newest failures: the run's row label and error message, one per line."""
    lines = [
        _div(
            f"<code>{snippet(label, MAX_LINK_TEXT)}</code> {snippet(message, max_chars)}",
            f"color:{_ERROR_COLOR}",
        )
        for label, message in state.failures
    ]
    if not lines:
        return ""
    hidden = state.failed - len(lines)
    more = _div(f"… and {hidden} more failed", _MUTED) if hidden > 0 else ""
    return _div("".join(lines) + more, f"margin:2px 0;{_WRAP}")


def batch_preview_html(state: BatchState, *, max_chars: int = 80) -> str:
    """The newest completed runs: row label and the first few output fields (no links)."""
    if not state.preview:
        return ""
    cells = [
        (
            f"<code>{snippet(label, MAX_LINK_TEXT)}</code>",
            " · ".join(
                f'<span style="{_MUTED}">{snippet(name, 40)}</span> '
                f"{snippet(_value_text(value), max_chars)}"
                for name, value in fields
            ),
        )
        for label, fields in state.preview
    ]
    return _table((("row", _NOWRAP), ("latest answers", "min-width:12em")), cells)


def batch_html(state: BatchState, *, max_chars: int = MAX_TEXT) -> str:
    """The whole batch panel as one HTML fragment (the fallback and the closed panel)."""
    width = f"{state.progress:.1f}"
    bar = (
        f'<div style="height:6px;border-radius:3px;overflow:hidden;margin:4px 0;'
        f'background:var(--jp-layout-color3, rgba(128, 128, 128, 0.25))">'
        f'<div style="width:{width}%;height:100%;background:{_STATUS_COLORS["running"]}"></div>'
        f"</div>"
    )
    body = (
        batch_header_html(state)
        + bar
        + batch_rate_html(state)
        + batch_failures_html(state, max_chars=max_chars)
        + batch_preview_html(state)
    )
    return f'<div class="parallel-nb-batch" style="{_CONTAINER}">{body}</div>'
