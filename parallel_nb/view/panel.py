"""Live views of a run, each drawing a RunState: a widget panel, an HTML display, text lines.

``RunPanel`` uses built-in ipywidgets only (no custom JavaScript, so it works wherever widgets
do); ``HtmlRunView`` redraws one ``display_id`` output when widgets are unavailable or not
wanted; ``TextRunView`` prints what changed, for terminals. All markup comes from
:mod:`parallel_nb.view.html`. Views are drawn from the main thread only (see
:mod:`parallel_nb.runs.runner`), and their ``text/plain`` is a fixed, secret-free repr, because
notebook checkers compare it. When a run ends, ``RunPanel`` replaces itself with static HTML so
a saved notebook shows the final state without widget state.
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Any, Generic, Protocol, TextIO, TypeVar

from ..runs.state import RunState
from . import html

if TYPE_CHECKING:
    from IPython.display import DisplayHandle

__all__ = [
    "HtmlRunView",
    "InPlaceHtml",
    "LivePanel",
    "RunPanel",
    "RunView",
    "TextRunView",
    "auto_view",
    "progress_bar",
]

S = TypeVar("S")

DEFAULT_MAX_MESSAGES = 6
"""Progress messages a view shows (the newest ones)."""

_BAR_STYLES = {
    "completed": "success",
    "failed": "danger",
    "cancelled": "danger",
    "error": "danger",
    "interrupted": "danger",
}


class RunView(Protocol):
    """Something that shows a run: ``update`` with each new state, ``close`` once at the end."""

    def update(self, state: RunState) -> None: ...

    def close(self) -> None: ...


class LivePanel(Generic[S]):
    """What every widget panel shares: a VBox of parts drawn from a state, one comm message per
    changed part per update, shown on the first ``update``; ``close`` swaps it for static HTML of
    the final state and closes the widgets (no widget state is left to save or leak).

    Subclasses build their parts, then call ``super().__init__``, and say how to ``_draw`` a
    state into the parts and how the closed panel looks (``_static_bundle``).
    """

    def __init__(self, state: S, parts: tuple[Any, ...]) -> None:
        import ipywidgets as widgets

        self._state = state
        self._parts = parts
        self._box = widgets.VBox(parts)
        self._handle: DisplayHandle | None = None  # None outside IPython: nothing to redraw
        self._shown = False
        self._closed = False

    @property
    def state(self) -> S:
        return self._state

    @property
    def widget(self) -> Any:
        """The ipywidgets VBox (for embedding the panel in a layout of your own)."""
        return self._box

    def update(self, state: S) -> None:
        if self._closed:
            return
        self._state = state
        # One comm message per widget that changed, however many of its traits changed.
        with contextlib.ExitStack() as stack:
            for part in self._parts:
                stack.enter_context(part.hold_sync())
            self._draw(state)
        if not self._shown:
            self._shown = True
            self._handle = _display(self)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._handle is not None:
            self._handle.update(self._static_bundle(), raw=True)
        for part in (self._box, *self._parts):
            _close_widget(part)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        if self._closed:
            return self._static_bundle()
        bundle = self._box._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = repr(self)
        return bundle

    def _draw(self, state: S) -> None:
        raise NotImplementedError

    def _static_bundle(self) -> dict[str, str]:
        raise NotImplementedError


class InPlaceHtml(Generic[S]):
    """What every HTML view shares: one output redrawn in place (``display_id``) with the
    subclass's ``_static_bundle`` of the newest state."""

    def __init__(self, state: S) -> None:
        self._state = state
        self._handle: DisplayHandle | None = None
        self._shown = False

    @property
    def state(self) -> S:
        return self._state

    def update(self, state: S) -> None:
        self._state = state
        bundle = self._static_bundle()
        if not self._shown:
            self._shown = True
            self._handle = _display(bundle, raw=True)
        elif self._handle is not None:
            self._handle.update(bundle, raw=True)

    def close(self) -> None:
        """Nothing to release: the last update already left the final state on screen."""

    def _static_bundle(self) -> dict[str, str]:
        raise NotImplementedError


def progress_bar() -> Any:
    """The full-width 0–100 progress bar both panels use."""
    import ipywidgets as widgets

    return widgets.FloatProgress(value=0.0, min=0.0, max=100.0, layout=widgets.Layout(width="100%"))


class RunPanel(LivePanel[RunState]):
    """The live panel of one run: header, progress bar, sources, message log and footer."""

    def __init__(self, processor: str, *, max_messages: int = DEFAULT_MAX_MESSAGES) -> None:
        import ipywidgets as widgets

        self._max_messages = max_messages
        self._header = widgets.HTML()
        self._bar = progress_bar()
        self._sources = widgets.HTML()
        self._log = widgets.HTML()
        self._footer = widgets.HTML()
        parts = (self._header, self._bar, self._sources, self._log, self._footer)
        super().__init__(RunState(processor=processor), parts)

    def _draw(self, state: RunState) -> None:
        self._header.value = html.header_html(state)
        self._bar.value = state.progress or 0.0
        self._bar.bar_style = _BAR_STYLES.get(state.status, "")
        self._bar.description = "" if state.progress is None else f"{state.progress:.0f}%"
        self._sources.value = html.sources_html(state)
        self._log.value = html.messages_html(state, limit=self._max_messages)
        self._footer.value = html.footer_html(state)

    def _static_bundle(self) -> dict[str, str]:
        return _static_bundle(self, self._state, self._max_messages)

    def __repr__(self) -> str:
        return _view_repr(self, self._state)


class HtmlRunView(InPlaceHtml[RunState]):
    """The run panel as one HTML output that is redrawn in place (``display_id``)."""

    def __init__(self, processor: str, *, max_messages: int = DEFAULT_MAX_MESSAGES) -> None:
        self._max_messages = max_messages
        super().__init__(RunState(processor=processor))

    def _static_bundle(self) -> dict[str, str]:
        return _static_bundle(self, self._state, self._max_messages)

    def __repr__(self) -> str:
        return _view_repr(self, self._state)


class TextRunView:
    """Prints each line of the state's text that was not printed before, as a running log."""

    def __init__(self, processor: str, *, file: TextIO | None = None) -> None:
        self._state = RunState(processor=processor)
        self._file = file
        self._printed: set[str] = set()

    @property
    def state(self) -> RunState:
        return self._state

    def update(self, state: RunState) -> None:
        self._state = state
        for line in html.state_text(state).splitlines():
            if line not in self._printed:
                self._printed.add(line)
                print(line, file=self._file or sys.stdout)

    def close(self) -> None:
        """Nothing to release: lines already printed stay printed."""

    def __repr__(self) -> str:
        return _view_repr(self, self._state)


def auto_view(
    processor: str, *, widget: bool = True, max_messages: int = DEFAULT_MAX_MESSAGES
) -> RunView | None:
    """The best view for where this code runs, or None outside IPython.

    In a Jupyter kernel: the widget panel if ``widget`` and ipywidgets imports, else the HTML
    view; in terminal IPython: text lines; in a plain Python process: no view at all.
    """
    shell = _shell()
    if shell is None:
        return None
    if getattr(shell, "kernel", None) is None:
        return TextRunView(processor)
    if widget and _has_ipywidgets():
        return RunPanel(processor, max_messages=max_messages)
    return HtmlRunView(processor, max_messages=max_messages)


def _static_bundle(view: object, state: RunState, max_messages: int) -> dict[str, str]:
    return {
        "text/html": html.state_html(state, max_messages=max_messages),
        "text/plain": _view_repr(view, state),
    }


def _view_repr(view: object, state: RunState) -> str:
    # No run id, clock or text from the web: notebook checkers compare this string.
    return f"{type(view).__name__}(processor={state.processor!r}, status={state.status!r})"


def _close_widget(widget: Any) -> None:
    """Close a widget with its layout and style models, which are widgets of their own."""
    for model in (widget, widget.layout, getattr(widget, "style", None)):
        if model is not None:
            model.close()


def _display(obj: Any, **kwargs: Any) -> DisplayHandle | None:
    from IPython.display import display

    return display(obj, display_id=True, **kwargs)


def _shell() -> Any:
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None


def _has_ipywidgets() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True
