"""The HTML and text views: hostile web text stays inert, only http(s) links, bounded, themeable."""

from __future__ import annotations

import dataclasses
import re
from html.parser import HTMLParser

import pytest

from parallel_nb.api.models import TaskOutput, TaskRun
from parallel_nb.result import TaskResult
from parallel_nb.runs.state import RunState
from parallel_nb.view.html import (
    MAX_TEXT,
    escape,
    link,
    plain,
    result_html,
    result_text,
    safe_url,
    snippet,
    state_html,
    state_text,
    truncate,
)

LONG = "A" * 100_000
HOSTILE = [
    "<script>alert(1)</script>",
    "<ScRiPt src=//evil.example/x.js></sCrIpT>",
    "<img src=x onerror=alert(1)>",
    '" onmouseover="alert(1)',
    "' onfocus='alert(1)' autofocus='",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(document.cookie)",
    "java\tscript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "</td></tr></table><iframe src=javascript:alert(1)>",
    "<!-- unterminated comment",
    "safe \u202egnp.exe text",
    "\u202eRTL override without end",
    LONG,
]
HOSTILE_URLS = [
    *HOSTILE,
    " javascript:alert(1)",
    "\x01javascript:alert(1)",
    "//evil.example/path",
    'https://ok.example/"><script>alert(1)</script>',
    "https://ok.example/a' onmouseover='alert(1)",
]

ALLOWED_TAGS = {"div", "span", "a", "bdi", "code", "strong", "table", "thead", "tbody", "tr"}
ALLOWED_TAGS |= {"th", "td", "wbr"}
ALLOWED_ATTRS = {"style", "class", "href", "target", "rel", "title"}


class Inspector(HTMLParser):
    """Collects every tag, attribute and text run, and whether bidi text sits inside <bdi>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.bdi_depth = 0
        self.unisolated_text: list[str] = []
        self.comments: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self.bdi_depth += tag == "bdi"

    def handle_endtag(self, tag: str) -> None:
        self.bdi_depth -= tag == "bdi"

    def handle_data(self, data: str) -> None:
        if self.bdi_depth == 0:
            self.unisolated_text.append(data)

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)


def assert_inert(markup: str) -> Inspector:
    """No script, no event handler, no unknown tag or attribute, every link http(s)."""
    assert "<script" not in markup.lower()
    assert not re.search(r"<[^>]*\son\w+\s*=", markup, re.IGNORECASE)
    inspector = Inspector()
    inspector.feed(markup)
    inspector.close()
    assert inspector.comments == []
    for tag, attrs in inspector.tags:
        assert tag in ALLOWED_TAGS, tag
        assert set(attrs) <= ALLOWED_ATTRS, attrs
        if tag == "a":
            href = attrs["href"] or ""
            assert re.match(r"^https?://[^/\s]", href, re.IGNORECASE), href
            assert safe_url(href) == href
            assert attrs["target"] == "_blank"
            assert attrs["rel"] == "noopener noreferrer nofollow"
        assert "javascript" not in (attrs.get("style") or "").lower()
    # Web text shows only inside <bdi>, so right-to-left overrides cannot leak out.
    assert "\u202e" not in "".join(inspector.unisolated_text)
    return inspector


def links(markup: str) -> list[str]:
    inspector = assert_inert(markup)
    return [attrs["href"] or "" for tag, attrs in inspector.tags if tag == "a"]


# -- primitives ----------------------------------------------------------------------------


def test_escape_covers_markup_and_both_quotes() -> None:
    assert escape("<a href=\"x\" title='y'>&</a>") == (
        "&lt;a href=&quot;x&quot; title=&#x27;y&#x27;&gt;&amp;&lt;/a&gt;"
    )
    assert escape(None) == ""
    assert escape(3.5) == "3.5"


@pytest.mark.parametrize(
    "url",
    [
        "https://example.org",
        "http://example.org/a?b=c#d",
        "HTTPS://EXAMPLE.ORG/Path",
        "https://[2001:db8::1]:8443/x",
        "https://例え.jp/パス",
        "  https://example.org/padded  ",
    ],
)
def test_http_urls_with_a_host_are_safe(url: str) -> None:
    assert safe_url(url) == url.strip()


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "java\nscript:alert(1)",
        "\x00javascript:alert(1)",
        "jav&#x09;ascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
        "ftp://example.org/x",
        "mailto:a@example.org",
        "//evil.example/x",
        "/relative/path",
        "https:evil.example",
        "http:/evil.example",
        "http:///evil.example",
        "https://",
        "https:\\\\evil.example",
        "https://user:pass@evil.example",
        "https://bank.example@evil.example/",
        "https://exa mple.org",
        "https://example.org/\u202etxt.exe",
        "https://example.org/\u200bzero-width",
        "http://[::1",
        "https://example.org/" + "x" * 5000,
        "",
        None,
        42,
    ],
)
def test_everything_else_is_not_a_safe_url(url: object) -> None:
    assert safe_url(url) is None


def test_link_opens_a_new_tab_without_referrer_and_escapes_its_text() -> None:
    markup = link("https://example.org/a?b=1&c=2", "<b>Example</b>")
    assert markup == (
        '<a href="https://example.org/a?b=1&amp;c=2" target="_blank" '
        'rel="noopener noreferrer nofollow" style="color:var(--jp-content-link-color, #3d8bfd)" '
        'title="https://example.org/a?b=1&amp;c=2">'
        "<bdi>&lt;b&gt;Example&lt;/b&gt;</bdi></a>"
    )
    assert link("https://www.example.org/path/") == (
        '<a href="https://www.example.org/path/" target="_blank" '
        'rel="noopener noreferrer nofollow" style="color:var(--jp-content-link-color, #3d8bfd)" '
        'title="https://www.example.org/path/">'
        "<bdi>example.org/path</bdi></a>"
    )


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_an_unsafe_url_becomes_escaped_text(url: str) -> None:
    markup = link(url)
    assert_inert(markup)
    if safe_url(url) is None:
        assert "<a" not in markup


def test_truncate_cuts_with_an_ellipsis() -> None:
    assert truncate("short", 10) == "short"
    assert truncate("abcdefghij", 10) == "abcdefghij"
    assert truncate("abcdefghijk", 10) == "abcdefghi…"
    assert len(truncate(LONG, 300)) == 300


def test_snippet_cuts_before_escaping_so_no_entity_is_split() -> None:
    assert snippet("&" * 10, 5) == "<bdi>&amp;&amp;&amp;&amp;…</bdi>"
    assert snippet(LONG) == f"<bdi>{'A' * (MAX_TEXT - 1)}…</bdi>"
    assert snippet(None) == ""


def test_plain_text_drops_controls_and_bidi_overrides() -> None:
    assert plain("line one\nline\ttwo\x1b[31m red") == "line one line two [31m red"
    assert plain("abc \u202eevil\u2066 x\u2069") == "abc evil x"
    assert plain(LONG, 50) == "A" * 49 + "…"


# -- the live panel ------------------------------------------------------------------------


def hostile_state(text: str) -> RunState:
    return RunState(
        processor=text,
        run_id=text,
        status="running",
        progress=55.0,
        sources_considered=37,
        sources_read=14,
        sources_sample=(text, "https://example.org/a", text, "https://example.org/b"),
        messages=((text, text, None), ("plan", text, "2025-08-06T00:53:19Z")),
        warnings=(text,),
        error=text,
        note=text,
        started_at=1.0,
    )


@pytest.mark.parametrize("text", HOSTILE)
def test_state_html_keeps_hostile_text_inert(text: str) -> None:
    markup = state_html(hostile_state(text))
    hrefs = links(markup)
    assert all(href.startswith("https://example.org/") for href in hrefs)
    # Every piece of web text is cut, so even a 100,000-character string stays small.
    assert len(markup) < 20_000


def test_state_html_shows_status_progress_sources_and_recent_messages() -> None:
    state = RunState(
        processor="core",
        run_id="trun_123",
        status="running",
        progress=55.0,
        sources_considered=37,
        sources_read=14,
        sources_sample=tuple(f"https://example.org/{n}" for n in range(5)),
        messages=tuple(("plan", f"message {n}", None) for n in range(10)),
        warnings=("too many fields",),
        started_at=0.0,
        finished_at=41.0,
    )
    markup = state_html(state, max_messages=4)
    assert_inert(markup)
    assert ">running</bdi></span>" in markup
    assert "00:41" in markup
    assert "width:55.0%" in markup
    assert "sources read 14 of 37 considered" in markup
    assert links(markup) == [f"https://example.org/{n}" for n in range(3)]
    assert "message 5" not in markup
    assert all(f"message {n}" in markup for n in range(6, 10))
    assert "warning: <bdi>too many fields</bdi>" in markup
    assert "trun_123" in markup


def test_state_html_is_themeable_and_wraps_long_words() -> None:
    markup = state_html(hostile_state("x"))
    assert "overflow-wrap:anywhere" in markup
    assert "var(--jp-" in markup
    # Every JupyterLab variable has a fallback for front ends that do not define it.
    assert not re.search(r"var\(--jp-[\w-]+\)", markup)


def test_state_text_is_deterministic_and_plain() -> None:
    state = hostile_state("<b>\u202etext\nwith lines</b>")
    text = state_text(state)
    assert state_text(dataclasses.replace(state, started_at=99.0)) == text
    assert "\u202e" not in text
    assert text.splitlines()[0] == (
        "Parallel · <b>text with lines</b> · running · run <b>text with lines</b>"
    )
    assert text.splitlines()[1] == "progress 55% · sources read 14 of 37 considered"


def test_state_text_of_a_new_run() -> None:
    assert state_text(RunState("core")) == "Parallel · core · creating"


# -- the result ----------------------------------------------------------------------------


def hostile_result(text: str, cached: bool = False) -> TaskResult:
    run = TaskRun.from_dict(
        {
            "run_id": "trun_1",
            "status": "completed",
            "is_active": False,
            "processor": "core",
            "warnings": [{"type": "warning", "message": text}],
        }
    )
    output = TaskOutput.from_dict(
        {
            "type": "json",
            "content": {text: text, "site": "https://example.org/site", "nested": {"v": [text]}},
            "basis": [
                {
                    "field": text,
                    "reasoning": text,
                    "confidence": text,
                    "citations": [
                        {"url": text, "title": text, "excerpts": [text, text]},
                        {"url": "https://example.org/cited", "title": text, "excerpts": None},
                    ],
                }
            ],
        }
    )
    return TaskResult(run=run, output=output, cached=cached)


@pytest.mark.parametrize("text", HOSTILE)
def test_result_html_keeps_hostile_text_inert(text: str) -> None:
    markup = result_html(hostile_result(text))
    hrefs = links(markup)
    assert "https://example.org/site" in hrefs
    assert "https://example.org/cited" in hrefs
    assert all(href.startswith("https://example.org/") for href in hrefs)
    assert len(markup) < 30_000


@pytest.mark.parametrize("text", HOSTILE)
def test_result_text_has_no_markup_tricks(text: str) -> None:
    rendered = result_text(hostile_result(text))
    assert "\u202e" not in rendered
    assert "\t" not in rendered
    assert max(len(line) for line in rendered.splitlines()) < 200


def test_result_html_summary_tables_and_cached_badge() -> None:
    result = hostile_result("plain words", cached=True)
    markup = result_html(result)
    assert ">cached</span>" in markup
    assert "3 fields · 2 citations" in markup
    assert markup.count("<table") == 2
    # Dot paths may wrap after their dots only.
    assert "<bdi>nested.<wbr>v.<wbr>0</bdi></code>" in markup
    assert ">cached<" not in result_html(hostile_result("plain words"))


def test_result_html_limits_rows_and_citations() -> None:
    run = TaskRun.from_dict({"run_id": "r", "status": "completed", "processor": "ultra"})
    citations = [{"url": f"https://example.org/{n}"} for n in range(5)]
    output = TaskOutput.from_dict(
        {
            "type": "json",
            "content": {f"f{n}": n for n in range(8)},
            "basis": [{"field": "f0", "reasoning": "r", "citations": citations}],
        }
    )
    markup = result_html(TaskResult(run, output), max_rows=5, max_citations=2)
    assert "… 3 more rows in <code>.output_df</code>" in markup
    assert "+3 more" in markup
    assert links(markup) == ["https://example.org/0", "https://example.org/1"]


def test_result_html_of_a_text_answer_keeps_its_line_breaks() -> None:
    run = TaskRun.from_dict({"run_id": "r", "status": "completed", "processor": "pro"})
    output = TaskOutput.from_dict({"type": "text", "content": "# Report\n\n<b>bold</b>"})
    markup = result_html(TaskResult(run, output))
    assert_inert(markup)
    assert '<span style="white-space:pre-wrap"><bdi># Report\n\n&lt;b&gt;bold&lt;/b&gt;' in markup


def test_a_bidi_override_cannot_reverse_text_inside_its_isolate() -> None:
    # "\u202eevil" displays as "live" even inside <bdi>: the controls go, the letters stay.
    assert snippet("\u202eevil\u2066 \u05e9\u05dc\u05d5\u05dd\u2069") == "<bdi>evil שלום</bdi>"


def test_status_badges_take_their_text_colour_from_the_theme() -> None:
    html = state_html(RunState(processor="core", status="completed"))
    assert "color:var(--jp-ui-inverse-font-color0, #fff);background:var(--jp-success-color1" in html
