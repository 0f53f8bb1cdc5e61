"""The live views: widget structure and content, message volume under a burst of events (counted
on a recording comm, as ipywidgets' own tests do), in-place HTML updates and the text log."""

from __future__ import annotations

import io
import time
from dataclasses import replace

import ipywidgets as widgets
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from scripted_api import RUN_ID, ScriptedClient, burst, request
from widget_comms import RecordingComm, updates

from parallel_nb.runs.runner import execute
from parallel_nb.runs.state import RunState
from parallel_nb.view import panel
from parallel_nb.view.html import state_html
from parallel_nb.view.panel import HtmlRunView, RunPanel, TextRunView, auto_view

RUNNING = RunState(
    processor="core",
    run_id=RUN_ID,
    status="running",
    progress=40.0,
    sources_considered=20,
    sources_read=7,
    sources_sample=("https://example.org/a", "javascript:alert(1)"),
    messages=(
        ("plan", "Find the <b>official</b> figure", None),
        ("search", "france gdp 2023 <script>alert(1)</script>", None),
    ),
    started_at=0.0,
)


def test_the_panel_is_a_vbox_of_builtin_widgets(comms: list[RecordingComm]) -> None:
    box = RunPanel("core").widget
    assert isinstance(box, widgets.VBox)
    kinds = [type(child) for child in box.children]
    assert kinds == [widgets.HTML, widgets.FloatProgress, widgets.HTML, widgets.HTML, widgets.HTML]


def test_the_panel_shows_status_progress_sources_messages_and_run_id(
    comms: list[RecordingComm], shell: InteractiveShell
) -> None:
    view = RunPanel("core")
    with capture_output():
        view.update(RUNNING)
    header, bar, sources, log, footer = view.widget.children
    assert "core" in header.value and "running" in header.value
    assert bar.value == 40.0 and bar.bar_style == "" and bar.description == "40%"
    assert "sources read 7 of 20 considered" in sources.value
    assert 'href="https://example.org/a"' in sources.value
    assert "javascript:" not in sources.value.replace("javascript:alert(1)</bdi>", "")
    assert "<script>" not in log.value and "&lt;script&gt;" in log.value
    assert "&lt;b&gt;official&lt;/b&gt;" in log.value
    assert RUN_ID in footer.value


def test_the_bar_turns_red_or_green_at_the_end(comms: list[RecordingComm]) -> None:
    view = RunPanel("core")
    with capture_output():
        view.update(replace(RUNNING, status="completed", progress=100.0))
        assert view.widget.children[1].bar_style == "success"
        view.update(replace(RUNNING, status="interrupted"))
        assert view.widget.children[1].bar_style == "danger"


def test_one_update_sends_at_most_one_message_per_widget(comms: list[RecordingComm]) -> None:
    view = RunPanel("core")
    with capture_output():
        view.update(RUNNING)
    before = updates(comms)
    with capture_output():
        view.update(replace(RUNNING, status="completed", progress=100.0, run_id="trun_2"))
    assert 0 < updates(comms) - before <= 5  # header, bar (3 traits), footer: one each


def test_the_repr_is_fixed_and_secret_free(comms: list[RecordingComm]) -> None:
    view = RunPanel("core")
    with capture_output():
        view.update(replace(RUNNING, status="completed"))
    assert repr(view) == "RunPanel(processor='core', status='completed')"
    bundle = view._repr_mimebundle_()
    assert bundle["text/plain"] == repr(view)
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_a_burst_of_1000_events_sends_messages_at_the_refresh_rate(
    comms: list[RecordingComm], shell: InteractiveShell
) -> None:
    view = RunPanel("core")
    client = ScriptedClient([burst(1000, batches=10, pause=0.05)])
    opened_before = updates(comms)
    started = time.monotonic()
    with capture_output():
        result = execute(client, request(), view=view, refresh_hz=4.0)
    duration = time.monotonic() - started
    assert result.status == "completed"
    sent = updates(comms) - opened_before
    draws = duration * 4.0 + 3  # at most one draw per 1/4 s, plus the first and the final
    assert sent <= draws * len(view.widget.children)
    assert sent < 100  # ≪ 1000 events


def test_close_replaces_the_widget_with_static_html(
    comms: list[RecordingComm], shell: InteractiveShell
) -> None:
    view = RunPanel("core")
    final = replace(RUNNING, status="completed", progress=100.0)
    with capture_output() as captured:
        view.update(final)
        view.close()
    first, last = captured.outputs[0], captured.outputs[-1]
    assert "application/vnd.jupyter.widget-view+json" in first.data
    assert last.update and last.transient == first.transient
    assert last.data == {
        "text/html": state_html(final, max_messages=6),
        "text/plain": "RunPanel(processor='core', status='completed')",
    }
    assert all(c.closed for c in comms)


def test_html_view_updates_one_display_in_place(shell: InteractiveShell) -> None:
    view = HtmlRunView("core")
    with capture_output() as captured:
        view.update(replace(RUNNING, status="queued"))
        view.update(RUNNING)
        view.close()
    first, second = captured.outputs
    assert not first.update and second.update
    assert first.transient["display_id"] == second.transient["display_id"]
    assert "&lt;script&gt;" in second.data["text/html"]
    assert second.data["text/plain"] == "HtmlRunView(processor='core', status='running')"


def test_text_view_prints_each_new_line_once() -> None:
    out = io.StringIO()
    view = TextRunView("core", file=out)
    view.update(RUNNING)
    view.update(RUNNING)
    view.update(replace(RUNNING, status="completed", progress=100.0))
    lines = out.getvalue().splitlines()
    assert len(lines) == len(set(lines))
    assert any("running" in line for line in lines)
    assert any("completed" in line for line in lines)
    assert sum("france gdp 2023" in line for line in lines) == 1


@pytest.mark.parametrize(
    ("shell_kind", "widget", "expected"),
    [
        (None, True, type(None)),
        ("terminal", True, TextRunView),
        ("kernel", True, RunPanel),
        ("kernel", False, HtmlRunView),
    ],
)
def test_auto_view_picks_the_view_for_the_front_end(
    monkeypatch: pytest.MonkeyPatch,
    comms: list[RecordingComm],
    shell_kind: str | None,
    widget: bool,
    expected: type,
) -> None:
    fake = {None: None, "terminal": object(), "kernel": type("K", (), {"kernel": object()})()}
    monkeypatch.setattr(panel, "_shell", lambda: fake[shell_kind])
    assert type(auto_view("core", widget=widget)) is expected
