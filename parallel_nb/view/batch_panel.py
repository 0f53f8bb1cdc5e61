"""Live views of a batch, each drawing a BatchState, and the feed that folds a group's events
into one at a bounded redraw rate.

``BatchPanel`` uses built-in ipywidgets only; ``HtmlBatchView`` redraws one ``display_id``
output when widgets are unavailable. All markup comes from :mod:`parallel_nb.view.html`. As for
single runs, ``text/plain`` is a fixed, clock-free repr (notebook checkers compare it), and a
closed ``BatchPanel`` leaves static HTML behind, not widget state.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..runs.batch_state import BatchState, fold_batch
from ..runs.runner import MAX_REFRESH_HZ, check_refresh_hz
from . import html
from .panel import _close_widget, _display

if TYPE_CHECKING:
    from IPython.display import DisplayHandle

    from ..api.models import Event

__all__ = ["BatchFeed", "BatchPanel", "BatchView", "HtmlBatchView", "Throttle"]


class BatchView(Protocol):
    """Something that shows a batch: ``update`` with each new state, ``close`` once at the end."""

    def update(self, state: BatchState) -> None: ...

    def close(self) -> None: ...


class BatchPanel:
    """The live panel: a VBox of header, progress bar, rate line, failures and latest rows.

    It displays itself on the first ``update``; ``close`` swaps it for static HTML of the
    final state and closes the widgets.
    """

    def __init__(self) -> None:
        import ipywidgets as widgets

        self._state = BatchState()
        self._header = widgets.HTML()
        self._bar = widgets.FloatProgress(
            value=0.0, min=0.0, max=100.0, layout=widgets.Layout(width="100%")
        )
        self._rate = widgets.HTML()
        self._failures = widgets.HTML()
        self._preview = widgets.HTML()
        self._parts = (self._header, self._bar, self._rate, self._failures, self._preview)
        self._box = widgets.VBox(self._parts)
        self._handle: DisplayHandle | None = None  # None outside IPython: nothing to redraw
        self._shown = False
        self._closed = False

    @property
    def state(self) -> BatchState:
        return self._state

    @property
    def widget(self) -> Any:
        """The ipywidgets VBox (for embedding the panel in a layout of your own)."""
        return self._box

    def update(self, state: BatchState) -> None:
        if self._closed:
            return
        self._state = state
        # One comm message per widget that changed, however many of its traits changed.
        with contextlib.ExitStack() as stack:
            for part in self._parts:
                stack.enter_context(part.hold_sync())
            self._header.value = html.batch_header_html(state)
            self._bar.value = state.progress
            self._bar.bar_style = _bar_style(state)
            self._bar.description = f"{state.progress:.0f}%"
            self._rate.value = html.batch_rate_html(state)
            self._failures.value = html.batch_failures_html(state)
            self._preview.value = html.batch_preview_html(state)
        if not self._shown:
            self._shown = True
            self._handle = _display(self)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._handle is not None:
            self._handle.update(_static_bundle(self, self._state), raw=True)
        for part in (self._box, *self._parts):
            _close_widget(part)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        if self._closed:
            return _static_bundle(self, self._state)
        bundle = self._box._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = repr(self)
        return bundle

    def __repr__(self) -> str:
        return _view_repr(self, self._state)


class HtmlBatchView:
    """The batch panel as one HTML output that is redrawn in place (``display_id``)."""

    def __init__(self) -> None:
        self._state = BatchState()
        self._handle: DisplayHandle | None = None
        self._shown = False

    @property
    def state(self) -> BatchState:
        return self._state

    def update(self, state: BatchState) -> None:
        self._state = state
        bundle = _static_bundle(self, state)
        if not self._shown:
            self._shown = True
            self._handle = _display(bundle, raw=True)
        elif self._handle is not None:
            self._handle.update(bundle, raw=True)

    def close(self) -> None:
        """Nothing to release: the last update already left the final state on screen."""

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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = BatchState()
        self._view = view
        self._throttle = Throttle(refresh_hz)
        self._clock = clock
        self._dirty = False

    def __call__(self, event: Event) -> None:
        now = self._clock()
        self.state = fold_batch(self.state, event, now)
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
