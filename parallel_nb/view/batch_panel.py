"""Live views of a batch, each drawing a BatchState, and the feed that folds a group's events
into one at a bounded redraw rate.

``BatchPanel`` uses built-in ipywidgets only; ``HtmlBatchView`` redraws one ``display_id``
output when widgets are unavailable. All markup comes from :mod:`parallel_nb.view.html`. As for
single runs, ``text/plain`` is a fixed, clock-free repr (notebook checkers compare it), and a
closed ``BatchPanel`` leaves static HTML behind, not widget state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ..runs.batch_state import BatchState, Labeller, fold_batch
from ..runs.runner import MAX_REFRESH_HZ, check_refresh_hz
from . import html
from .panel import InPlaceHtml, LivePanel, progress_bar

if TYPE_CHECKING:
    from ..api.models import Event

__all__ = ["BatchFeed", "BatchPanel", "BatchView", "HtmlBatchView", "Throttle"]


class BatchView(Protocol):
    """Something that shows a batch: ``update`` with each new state, ``close`` once at the end."""

    def update(self, state: BatchState) -> None: ...

    def close(self) -> None: ...


class BatchPanel(LivePanel[BatchState]):
    """The live panel of a batch: header, progress bar, rate line, failures and latest rows."""

    def __init__(self) -> None:
        import ipywidgets as widgets

        self._header = widgets.HTML()
        self._bar = progress_bar()
        self._rate = widgets.HTML()
        self._failures = widgets.HTML()
        self._preview = widgets.HTML()
        parts = (self._header, self._bar, self._rate, self._failures, self._preview)
        super().__init__(BatchState(), parts)

    def _draw(self, state: BatchState) -> None:
        self._header.value = html.batch_header_html(state)
        self._bar.value = state.progress
        self._bar.bar_style = _bar_style(state)
        self._bar.description = f"{state.progress:.0f}%"
        self._rate.value = html.batch_rate_html(state)
        self._failures.value = html.batch_failures_html(state)
        self._preview.value = html.batch_preview_html(state)

    def _static_bundle(self) -> dict[str, str]:
        return _static_bundle(self, self._state)

    def __repr__(self) -> str:
        return _view_repr(self, self._state)


class HtmlBatchView(InPlaceHtml[BatchState]):
    """The batch panel as one HTML output that is redrawn in place (``display_id``)."""

    def __init__(self) -> None:
        super().__init__(BatchState())

    def _static_bundle(self) -> dict[str, str]:
        return _static_bundle(self, self._state)

    def __repr__(self) -> str:
        return _view_repr(self, self._state)


class Throttle:
    """Says when a redraw is due: at most ``hz`` times a second (the runner's limit)."""

    def __init__(self, hz: float = MAX_REFRESH_HZ) -> None:
        self._interval = 1.0 / check_refresh_hz(hz)
        self._last: float | None = None

    def due(self, now: float) -> bool:
        """True, and counted as a redraw, when ``now`` is at least an interval after the last."""
        if self._last is not None and now < self._last + self._interval:
            return False
        self._last = now
        return True


class BatchFeed:
    """An ``on_event`` callback for :func:`~parallel_nb.runs.batch.run_batch`: folds each group
    event into :attr:`state` and redraws ``view`` when the throttle allows; ``close`` draws
    whatever is left and closes the view. ``clock`` is the monotonic time source."""

    def __init__(
        self,
        view: BatchView | None,
        *,
        refresh_hz: float = MAX_REFRESH_HZ,
        label: Labeller | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = BatchState()
        self._label = label
        self._view = view
        self._throttle = Throttle(refresh_hz)
        self._clock = clock
        self._dirty = False

    def __call__(self, event: Event) -> None:
        now = self._clock()
        self.state = fold_batch(self.state, event, now, self._label)
        self._dirty = True
        if self._throttle.due(now):
            self._draw()

    def close(self) -> None:
        if self._dirty:
            self._draw()
        if self._view is not None:
            self._view.close()

    def _draw(self) -> None:
        if self._view is not None:
            self._view.update(self.state)
        self._dirty = False


def _bar_style(state: BatchState) -> str:
    if state.failed:
        return "warning"
    return "success" if state.runs and state.finished >= state.runs else ""


def _static_bundle(view: object, state: BatchState) -> dict[str, str]:
    return {"text/html": html.batch_html(state), "text/plain": _view_repr(view, state)}


def _view_repr(view: object, state: BatchState) -> str:
    # Counts only, no clock or run ids: notebook checkers compare this string.
    return (
        f"{type(view).__name__}(runs={state.runs}, completed={state.completed}, "
        f"failed={state.failed})"
    )
