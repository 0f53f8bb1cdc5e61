"""The batch views: widget structure and content, hostile text escaped (never linked), message
volume under a burst of 1,000 group events (counted on a recording comm), the fixed repr and
the static HTML left on close."""

from __future__ import annotations

import itertools
from dataclasses import replace

import ipywidgets as widgets
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from widget_comms import RecordingComm, updates

from parallel_nb.api.models import GroupStatusEvent
from parallel_nb.runs.batch_state import BatchState
from parallel_nb.view.batch_panel import BatchFeed, BatchPanel, HtmlBatchView, Throttle
from parallel_nb.view.html import batch_html

HOSTILE = '<script>alert(1)</script><a href="javascript:alert(2)">x</a>'
STATE = BatchState(
    runs=40,
    counts=(("completed", 12), ("failed", 1), ("queued", 20), ("running", 7)),
    failures=(("trun_<b>1</b>", f"failed: {HOSTILE}"),),
    preview=(
        ("trun_2", (("ceo", HOSTILE), ("site", "javascript:alert(3)"))),
        ("trun_3", (("site", "https://example.org/"), ("year", 1999))),
    ),
    started_at=0.0,
    last_event_at=13.0,
)


def test_the_panel_is_a_vbox_of_builtin_widgets(comms: list[RecordingComm]) -> None:
    box = BatchPanel().widget
    assert isinstance(box, widgets.VBox)
    kinds = [type(child) for child in box.children]
    assert kinds == [widgets.HTML, widgets.FloatProgress, widgets.HTML, widgets.HTML, widgets.HTML]


def test_the_panel_shows_counts_progress_rate_failures_and_rows(
    comms: list[RecordingComm], shell: InteractiveShell
) -> None:
    view = BatchPanel()
    with capture_output():
        view.update(STATE)
    header, bar, rate, failures, preview = view.widget.children
    assert "13 of 40 runs ended" in header.value
    assert "queued" in header.value and "running" in header.value
    assert bar.value == 32.5 and bar.description == "32%" and bar.bar_style == "warning"
    assert "1.00 runs/s" in rate.value and "00:27 left" in rate.value
    assert "trun_&lt;b&gt;1&lt;/b&gt;" in failures.value
    assert "Ada" not in preview.value and "trun_3" in preview.value and "1999" in preview.value


def test_hostile_text_is_escaped_and_never_linked() -> None:
    markup = batch_html(STATE)
    assert "<script>" not in markup and "&lt;script&gt;" in markup
    assert "<a " not in markup  # no answer value becomes a link, not even a safe URL
    assert 'href="javascript:' not in markup
    assert "javascript:alert(3)" in markup  # shown as text


def test_the_rate_waits_for_the_first_run_to_end() -> None:
    markup = batch_html(BatchState(runs=5, counts=(("queued", 5),)))
    assert "waiting for the first run to end" in markup
    assert "0 of 5 runs ended" in markup


def test_the_repr_is_fixed_counts_only(comms: list[RecordingComm]) -> None:
    view = BatchPanel()
    with capture_output():
        view.update(STATE)
    assert repr(view) == "BatchPanel(runs=40, completed=12, failed=1)"
    later = replace(STATE, last_event_at=99.0)
    with capture_output():
        view.update(later)
    assert repr(view) == "BatchPanel(runs=40, completed=12, failed=1)"
    assert view._repr_mimebundle_()["text/plain"] == repr(view)


def test_close_replaces_the_widget_with_static_html(
    comms: list[RecordingComm], shell: InteractiveShell
) -> None:
    view = BatchPanel()
    with capture_output() as captured:
        view.update(STATE)
        view.close()
    first, last = captured.outputs[0], captured.outputs[-1]
    assert "application/vnd.jupyter.widget-view+json" in first.data
    assert last.update and last.transient == first.transient
    assert last.data == {
        "text/html": batch_html(STATE),
        "text/plain": "BatchPanel(runs=40, completed=12, failed=1)",
    }
    assert all(c.closed for c in comms)


def test_html_view_updates_one_display_in_place(shell: InteractiveShell) -> None:
    view = HtmlBatchView()
    with capture_output() as captured:
        view.update(BatchState(runs=40))
        view.update(STATE)
    first, second = captured.outputs
    assert not first.update and second.update
    assert first.transient["display_id"] == second.transient["display_id"]
    assert second.data["text/plain"] == "HtmlBatchView(runs=40, completed=12, failed=1)"


def test_the_throttle_allows_one_draw_per_interval() -> None:
    throttle = Throttle(4.0)
    assert [throttle.due(t) for t in (0.0, 0.1, 0.2, 0.25, 0.3, 0.6)] == [
        True,
        False,
        False,
        True,
        False,
        True,
    ]
    with pytest.raises(ValueError, match="refresh_hz"):
        Throttle(100.0)


def test_a_burst_of_1000_events_sends_messages_at_the_refresh_rate(
    comms: list[RecordingComm], shell: InteractiveShell
) -> None:
    view = BatchPanel()
    ticks = itertools.count()
    # 1,000 events over 10 s of (simulated) time: at 4 Hz that is at most 41 draws.
    feed = BatchFeed(view, refresh_hz=4.0, clock=lambda: next(ticks) / 100)
    with capture_output():
        for done in range(1, 1001):
            status = {
                "num_task_runs": 1000,
                "task_run_status_counts": {"completed": done, "running": 1000 - done},
                "is_active": done < 1000,
            }
            feed(GroupStatusEvent.from_dict({"event_id": str(done), "status": status}))
        feed.close()
    assert feed.state.completed == 1000 and feed.state.progress == 100.0
    sent = updates(comms)
    assert 0 < sent <= 42 * len(view.widget.children)
    assert repr(view) == "BatchPanel(runs=1000, completed=1000, failed=0)"
