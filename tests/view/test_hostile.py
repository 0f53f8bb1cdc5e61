"""Hostile web content through every render path, over real HTTP against the emulator.

The built-in ``hostile-content`` fixture (input ``emulator: hostile``) answers with markup,
script, event handlers, ``javascript:``/``data:`` URLs, bidi overrides, control characters and
very long text in every value, title, excerpt, reasoning, message and URL; ``hostile-failure``
(``emulator: hostile-fail``) fails with such a message. Each run is drawn by every view (the
widget panel, the HTML fallback, the text log, the closed panel), every result display and
DataFrame, and every batch view; a checker built on the stdlib ``HTMLParser`` walks the markup
for anything a browser would run or follow, and the text outputs are checked for control and
bidi characters. The checker is shown to reject known-bad markup, and to see the hostile text
(escaped, as text), so a path that rendered nothing would fail too.
"""

from __future__ import annotations

import io
import itertools
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import ipywidgets as widgets
import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from widget_comms import RecordingComm

from parallel_nb.api.client import Client
from parallel_nb.api.errors import RunFailed
from parallel_nb.api.models import TaskRequest
from parallel_nb.emulator import EmulatorHandle
from parallel_nb.result import TaskResult
from parallel_nb.runs.batch import RowLabels, plan_batch, run_batch
from parallel_nb.runs.batch_state import BatchState
from parallel_nb.runs.runner import execute
from parallel_nb.runs.state import RunState, fold
from parallel_nb.spec.schema import output_to_task_spec
from parallel_nb.view import html
from parallel_nb.view.batch_panel import BatchFeed, BatchPanel, HtmlBatchView
from parallel_nb.view.panel import HtmlRunView, RunPanel, TextRunView

MARKER = "PNB-XSS"
HOSTILE = "emulator: hostile"
HOSTILE_FAIL = "emulator: hostile-fail"
# What the fixture's script payloads look like once they are shown as text.
SHOWN_SCRIPT = '<script>alert("PNB-XSS")'
COMPANY_FIELDS = (
    "name: the company's name\n"
    "website: its website\n"
    "founded (integer): the year it was founded\n"
    "founders (list): who founded it\n"
    "headquarters: where it is based\n"
    "ceo: the current CEO\n"
    "industry: its industry\n"
    "employees (integer): its headcount\n"
    "description: what it does"
)

# -- the checkers ----------------------------------------------------------------------------

FORBIDDEN_TAGS = frozenset(
    {"script", "iframe", "frame", "object", "embed", "style", "svg", "math", "form", "base",
     "meta", "link", "template", "applet", "noscript", "input", "button", "img", "video",
     "audio", "source"}
)  # fmt: skip
URL_ATTRIBUTES = frozenset(
    {"href", "src", "action", "formaction", "xlink:href", "data", "poster", "background",
     "ping", "cite", "manifest", "lowsrc", "dynsrc"}
)  # fmt: skip
# Browsers drop ASCII tabs and newlines inside URLs and ignore leading controls and spaces, so
# attribute values are compared without them.
_URL_NOISE = re.compile(r"[\x00-\x20\x7f]+")
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def _url_problem(name: str, value: str) -> str | None:
    parts = urlsplit(value.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return f"{name}={value!r} is not an http(s) URL with a host"
    return None


class MarkupChecker(HTMLParser):
    """Collects what a browser would run or follow in a fragment, and the text it shows."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # attribute values as the browser reads them
        self.problems: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in FORBIDDEN_TAGS:
            self.problems.append(f"<{tag}> tag")
        for name, value in attrs:
            self._attribute(tag, name, value or "")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def handle_comment(self, data: str) -> None:
        self.problems.append(f"comment <!--{data[:40]}...")  # hostile text must never open one

    def _attribute(self, tag: str, name: str, value: str) -> None:
        squeezed = _URL_NOISE.sub("", value).lower()
        if name.startswith("on"):
            self.problems.append(f"<{tag} {name}=...> event handler")
        if "javascript:" in squeezed or "vbscript:" in squeezed:
            self.problems.append(f"<{tag} {name}={value[:60]!r}> script URL")
        if name in URL_ATTRIBUTES and (problem := _url_problem(name, value)):
            self.problems.append(f"<{tag}> {problem}")
        if name == "srcset":
            for candidate in value.split(","):
                url = candidate.strip().split(" ")[0]
                if problem := _url_problem(name, url):
                    self.problems.append(f"<{tag}> {problem}")
        if name == "style" and ("url(" in squeezed or "expression(" in squeezed):
            self.problems.append(f"<{tag} style={value[:60]!r}> loads or computes")


def inert_text(markup: str) -> str:
    """The text ``markup`` shows; fails listing everything in it a browser would run or
    follow (script-capable tags, event handlers, non-http(s) links, script URLs, style URLs)."""
    checker = MarkupChecker()
    checker.feed(markup)
    checker.close()
    assert not checker.problems, checker.problems
    return " ".join(checker.text)  # cells and lines stay apart, as on screen


def assert_shows_hostile_text(markup: str) -> str:
    """``markup`` is inert and shows the hostile payload as (escaped) text."""
    text = inert_text(markup)
    assert MARKER in text, "the hostile text was not rendered at all"
    return text


def assert_clean_text(text: str, *, max_line: int) -> None:
    """Plain text with no control characters but newlines, no bidi controls, short lines."""
    assert MARKER in text, "the hostile text was not rendered at all"
    bad = {
        f"U+{ord(ch):04X}"
        for ch in text
        if ch in BIDI_CONTROLS or (unicodedata.category(ch) == "Cc" and ch not in "\n\t")
    }
    assert not bad, f"control or bidi characters in text output: {sorted(bad)}"
    longest = max(len(line) for line in text.splitlines())
    assert longest <= max_line, f"a {longest}-character line: long text is not truncated"


def assert_wraps(markup: str, container: str) -> None:
    """The view's container lets long unbroken words wrap instead of widening the output."""
    match = re.search(rf'<div class="{container}" style="([^"]*)"', markup)
    assert match is not None, f"no {container} container"
    assert "overflow-wrap:anywhere" in match.group(1) or "word-break:break-all" in match.group(1)


def assert_long_words_wrap(markup: str) -> None:
    """A fragment showing a word longer than a link's text lets it wrap: the widget panels'
    parts have no container of their own to inherit the rule from."""
    if max(map(len, inert_text(markup).split()), default=0) > html.MAX_LINK_TEXT:
        assert "overflow-wrap:anywhere" in markup, f"a long word cannot wrap in {markup[:200]}"


BAD_MARKUP = [
    '<script>alert("PNB-XSS")</script>',
    '<img src=x onerror=alert("PNB-XSS")>',
    '<svg onload=alert("PNB-XSS")>',
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href=" \tjava&#x09;script:alert(1)">x</a>',
    '<a href="&#106;avascript:alert(1)">x</a>',
    '<a href="data:text/html,<script>alert(1)</script>">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<a href="//evil.example/">x</a>',
    '<a href="/relative">x</a>',
    '<a href="https:evil.example">x</a>',
    '<a title="javascript:alert(1)" href="https://example.org/">x</a>',
    '<div onmouseover="alert(1)">x</div>',
    '<span ONCLICK="alert(1)">x</span>',
    '<div style="background:url(https://evil.example/x.png)">x</div>',
    '<div style="width:expression(alert(1))">x</div>',
    "<style>*{color:red}</style>",
    '<iframe src="https://example.org/"></iframe>',
    '<object data="https://example.org/x.swf"></object>',
    '<embed src="https://example.org/x.swf">',
    '<form action="https://example.org/"><input></form>',
    '<button formaction="javascript:alert(1)">x</button>',
    '<base href="https://evil.example/">',
    '<meta http-equiv="refresh" content="0;url=https://evil.example/">',
    '<link rel="stylesheet" href="https://evil.example/x.css">',
    "<math><mtext>x</mtext></math>",
    '<img srcset="https://example.org/a.png 1x, javascript:alert(1) 2x">',
    '<svg><a xlink:href="javascript:alert(1)">x</a></svg>',
    "<!--<img src=x onerror=alert(1)>-->",
]


@pytest.mark.parametrize("markup", BAD_MARKUP)
def test_the_checker_rejects_known_bad_markup(markup: str) -> None:
    with pytest.raises(AssertionError):
        inert_text(f"<div>{markup}</div>")


def test_the_checker_accepts_escaped_payloads_and_http_links() -> None:
    markup = (
        f"<div>{html.snippet(BAD_MARKUP[0])} "
        f"{html.link('https://example.org/a?b=1', 'ok')} {html.link('javascript:alert(1)')}</div>"
    )
    assert SHOWN_SCRIPT in assert_shows_hostile_text(markup)
    with pytest.raises(AssertionError, match="not rendered"):
        assert_shows_hostile_text("<div>nothing here</div>")


@pytest.mark.parametrize(
    "text",
    [f"{MARKER}\x1b[31m", f"{MARKER}\u202e", f"{MARKER}\r", f"{MARKER}\x85", MARKER * 100],
)
def test_the_text_check_rejects_controls_bidi_and_long_lines(text: str) -> None:
    with pytest.raises(AssertionError):
        assert_clean_text(text, max_line=400)


# -- running the hostile fixtures ------------------------------------------------------------


@pytest.fixture
def api(emulator: EmulatorHandle) -> Iterator[Client]:
    with Client(emulator.api_key, emulator.base_url) as client:
        yield client


@dataclass
class Shown:
    """Everything the run views put on screen: markup fragments and printed text."""

    markup: list[str] = field(default_factory=list)
    text: io.StringIO = field(default_factory=io.StringIO)


class EveryView:
    """A RunView that draws each state on the widget panel, the HTML view and the text log,
    keeping every widget's markup as it was drawn (not only the last)."""

    def __init__(self, processor: str, shown: Shown) -> None:
        self.shown = shown
        self.panel = RunPanel(processor)
        self.views = (self.panel, HtmlRunView(processor), TextRunView(processor, file=shown.text))

    def update(self, state: RunState) -> None:
        for view in self.views:
            view.update(state)
        children = self.panel.widget.children
        self.shown.markup += [c.value for c in children if isinstance(c, widgets.HTML)]

    def close(self) -> None:
        for view in self.views:
            view.close()


def request(input: str | dict[str, Any], output: str | None, processor: str) -> TaskRequest:
    spec = output_to_task_spec(output, processor)
    return TaskRequest(processor=processor, input=input, task_spec=spec, enable_events=True)


def run_in_every_view(api: Client, task: TaskRequest) -> tuple[str, Shown]:
    """Run ``task`` with every live view, then replay its whole event stream through fresh
    views (the runner redraws at most a few times a second, so a fast run skips states);
    returns the run id and everything shown, displays included."""
    shown = Shown()
    with capture_output() as captured:
        try:
            run_id = execute(api, task, view=EveryView(task.processor, shown)).run_id
        except RunFailed as failed:
            run_id = failed.run_id
        replay = EveryView(task.processor, shown)
        state = RunState(processor=task.processor)
        for event in api.events(run_id):
            state = fold(state, event)
            replay.update(state)
        replay.close()
    shown.markup += [out.data["text/html"] for out in captured.outputs if "text/html" in out.data]
    return run_id, shown


def assert_live_views_inert(shown: Shown) -> None:
    assert shown.markup
    for markup in shown.markup:
        assert_long_words_wrap(markup)
    seen = "".join(inert_text(markup) for markup in shown.markup)
    assert SHOWN_SCRIPT in seen and "PNB-XSS" in seen  # trace messages shown as text
    panels = [m for m in shown.markup if m.startswith('<div class="parallel-nb-run"')]
    assert panels  # the HTML view's displays and the closed panel's static bundle
    for markup in panels:
        assert_wraps(markup, "parallel-nb-run")
    assert_clean_text(shown.text.getvalue(), max_line=400)


def assert_result_inert(result: TaskResult) -> None:
    """Every display of a result: its bundle, repr, stored bundle and (with output) frames."""
    data, metadata = result._repr_mimebundle_()
    assert_shows_hostile_text(data["text/html"])
    assert_wraps(data["text/html"], "parallel-nb-result")
    assert_clean_text(data["text/plain"], max_line=400)
    assert_clean_text(repr(result), max_line=400)
    stored, _ = result.stored_bundle("res")
    assert_shows_hostile_text(stored["text/html"])
    assert_clean_text(stored["text/plain"], max_line=400)
    assert MARKER not in str(metadata)  # provenance names the run, never its content
    if result.task_output is not None:
        assert_frame_inert(result.output_df)
        assert_frame_inert(result.basis_df)


# pandas' notebook HTML starts with a fixed <style> block of its own (no data in it).
_PANDAS_STYLE = re.compile(r"^<div>\n<style scoped>[^<]*</style>\n")


def assert_frame_inert(frame: pd.DataFrame) -> None:
    notebook = frame._repr_html_()
    assert _PANDAS_STYLE.match(notebook)
    shown = assert_shows_hostile_text(_PANDAS_STYLE.sub("<div>", notebook))
    # The notebook display cuts long cells, so a 10,000-character word cannot widen the table
    # (to_html exports whole cells: it is checked for safety only).
    assert max(map(len, shown.split())) < 100
    assert_shows_hostile_text(frame.to_html())


@pytest.mark.parametrize(
    ("input", "output", "processor"),
    [
        ({"company": HOSTILE}, COMPANY_FIELDS, "core"),
        (f"Write a report on ACME ({HOSTILE})", "text", "core"),
        (f"Profile ACME ({HOSTILE})", None, "pro"),
    ],
    ids=["json", "text", "auto"],
)
def test_a_hostile_answer_is_inert_in_every_view(
    api: Client,
    comms: list[RecordingComm],
    shell: InteractiveShell,
    input: str | dict[str, Any],
    output: str | None,
    processor: str,
) -> None:
    run_id, shown = run_in_every_view(api, request(input, output, processor))
    assert_live_views_inert(shown)
    # Unsafe sources are shown as text, a safe one as a link.
    sources = "".join(shown.markup)
    assert 'href="https://hostile.example/source?&lt;script&gt;"' in sources

    result = api.result(run_id)
    task_result = TaskResult(run=result.run, output=result.output)
    assert task_result.status == "completed"
    assert_result_inert(task_result)
    markup = html.result_html(task_result)
    assert 'href="https://' in markup  # the safe citations are still links
    # The 10,000-character word is cut to the table's value length.
    assert max(map(len, inert_text(markup).split())) <= html.MAX_VALUE
    urls = task_result.basis_df["url"].dropna()
    assert urls.str.contains("javascript:", case=False).any()  # the data keeps what was sent


def test_a_hostile_failure_is_inert_in_every_view(
    api: Client, comms: list[RecordingComm], shell: InteractiveShell
) -> None:
    run_id, shown = run_in_every_view(api, request(f"ACME ({HOSTILE_FAIL})", "text", "core"))
    assert_live_views_inert(shown)
    assert any("error: " in m and SHOWN_SCRIPT in inert_text(m) for m in shown.markup)

    failed = TaskResult(run=api.retrieve_run(run_id), output=None)
    assert failed.status == "failed" and failed.error is not None
    assert_result_inert(failed)


def test_a_hostile_batch_is_inert_in_every_view(
    api: Client, comms: list[RecordingComm], shell: InteractiveShell
) -> None:
    # Row labels come from the user's index, which may itself come from the web.
    df = pd.DataFrame(
        {"company": [HOSTILE, f"ACME {HOSTILE_FAIL}", "Stripe"]},
        index=pd.Index(['<img src=x onerror=alert("PNB-XSS")>', "\u202eevil", "ok"]),
    )
    plan = plan_batch(df, input_template=None, output=COMPANY_FIELDS, processor="lite")
    labels = RowLabels(plan)
    states: list[BatchState] = []
    views = (BatchPanel(), HtmlBatchView())
    shown: list[str] = []

    class Recording:
        def update(self, state: BatchState) -> None:
            states.append(state)
            for view in views:
                view.update(state)
            shown.extend(c.value for c in views[0].widget.children if isinstance(c, widgets.HTML))

        def close(self) -> None:
            for view in views:
                view.close()

    # A clock that jumps a minute per event: every event is drawn, none is throttled away.
    feed = BatchFeed(Recording(), label=labels, clock=itertools.count(0, 60).__next__)
    with capture_output() as captured:
        result = run_batch(api, plan, on_event=feed, recorder=labels)
        feed.close()
    shown += [out.data["text/html"] for out in captured.outputs if "text/html" in out.data]

    assert result.failed == 1
    final = states[-1]
    assert final.failures and final.preview
    for markup in shown:
        assert_long_words_wrap(markup)
    seen = "".join(map(inert_text, shown))
    assert SHOWN_SCRIPT in seen and '<img src=x onerror=alert("PNB-XSS")>' in seen
    for state in states:
        markup = html.batch_html(state)
        inert_text(markup)
        assert_wraps(markup, "parallel-nb-batch")
    assert_shows_hostile_text(html.batch_html(final))

    assert_frame_inert(result.frame(df))
    assert_frame_inert(result.basis_df)


def test_a_hostile_failure_traceback_is_clean_text(api: Client) -> None:
    with pytest.raises(RunFailed) as failed:
        execute(api, request(f"ACME ({HOSTILE_FAIL})", "text", "lite"))
    assert_clean_text("\n".join(failed.value._render_traceback_()), max_line=400)
