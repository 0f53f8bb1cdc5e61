"""parallel-nb: Parallel's web-research Task API in Jupyter, as a magic and as Python calls.

``%load_ext parallel_nb`` registers ``%%parallel`` and ``%parallel``; :func:`run`,
:func:`arun` and :func:`fetch` are the same runs from Python, recorded in the same run store
(and answered from its cache); :func:`enrich` researches every row of a DataFrame through one
task group. Importing this package is cheap: HTTP, pandas and widgets load
on first use, and the demo emulator starts on the first run.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Literal, overload

if TYPE_CHECKING:
    from collections.abc import Mapping

    import pandas as pd
    from IPython.core.interactiveshell import InteractiveShell

    from .api.models import TaskRequest
    from .result import TaskResult
    from .runs.background import RunHandle
    from .runs.batch import BatchPlan, BatchResult
    from .runs.store import RunStore, StoredRun
    from .view.batch_panel import BatchView

__version__ = "0.1.0"
__all__ = [
    "__version__",
    "arun",
    "enrich",
    "fetch",
    "load_ipython_extension",
    "run",
    "unload_ipython_extension",
]


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """Register the magics; nothing else (no network, no emulator) happens until a run."""
    from .magic import ParallelMagics

    ipython.register_magics(ParallelMagics)


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    """Remove ``%%parallel`` / ``%parallel`` and the magics' configurable."""
    from .magic import ParallelMagics

    manager = ipython.magics_manager
    instance = manager.registry.pop(ParallelMagics.__name__, None)
    for kind, names in ParallelMagics.magics.items():
        for name in names:
            manager.magics[kind].pop(name, None)
    if instance in ipython.configurables:
        ipython.configurables.remove(instance)


@overload
def run(
    input: str | Mapping[str, Any],
    processor: str = ...,
    output: str | Mapping[str, Any] | None = ...,
    *,
    timeout: float | None = ...,
    widget: bool = ...,
    refresh: bool = ...,
    background: Literal[False] = ...,
    **options: Any,
) -> TaskResult: ...


@overload
def run(
    input: str | Mapping[str, Any],
    processor: str = ...,
    output: str | Mapping[str, Any] | None = ...,
    *,
    timeout: float | None = ...,
    widget: bool = ...,
    refresh: bool = ...,
    background: Literal[True],
    **options: Any,
) -> RunHandle: ...


def run(
    input: str | Mapping[str, Any],
    processor: str = "core",
    output: str | Mapping[str, Any] | None = None,
    *,
    timeout: float | None = None,
    widget: bool = True,
    refresh: bool = False,
    background: bool = False,
    **options: Any,
) -> TaskResult | RunHandle:
    """Run one task and block until it ends; the live panel shows in a notebook.

    ``input`` is text or a dict; ``output`` a spec as in a ``%%parallel`` cell (field lines,
    a JSON schema, a text description; None lets the processor choose). ``options`` are the
    request's own fields: ``metadata``, ``source_policy``, ``location``, ``enable_events``
    and ``previous`` (an earlier TaskResult or run id to continue from). Raises
    ``RunFailed`` if the run fails; Ctrl-C stops watching, the run goes on (see
    :func:`fetch`).

    The run is recorded in the run store. An identical request that completed before is
    answered from it at once (``result.cached``), one still going is followed instead of
    paying twice; ``refresh=True`` creates a new run regardless. ``background=True`` returns
    a :class:`~parallel_nb.runs.background.RunHandle` at once (``.result()``, ``await``).
    """
    from .config import get_client, get_settings
    from .runs.tracking import submit
    from .view.panel import auto_view

    request = _request(input, processor, output, options)
    return submit(
        get_client(),
        request,
        store=_store(),
        endpoint=get_settings().endpoint,
        new_view=lambda: auto_view(request.processor, widget=widget),
        refresh=refresh,
        background=background,
        timeout=timeout,
    )


async def arun(
    input: str | Mapping[str, Any],
    processor: str = "core",
    output: str | Mapping[str, Any] | None = None,
    *,
    timeout: float | None = None,
    widget: bool = True,
    refresh: bool = False,
    **options: Any,
) -> TaskResult:
    """:func:`run` as a coroutine: ``await parallel_nb.arun(...)`` in a notebook cell.

    It runs on the caller's event loop (the kernel's, in Jupyter), so several runs can be
    awaited together with ``asyncio.gather``. The run store and its cache apply as for
    :func:`run`.
    """
    from .config import get_async_client, get_client, get_settings
    from .runs.background import follow_in_background
    from .runs.runner import aexecute
    from .runs.tracking import aactive_run, plan
    from .view.panel import auto_view

    request = _request(input, processor, output, options)
    planned = plan(_store(), request, endpoint=get_settings().endpoint, refresh=refresh)
    if planned.cached is not None:
        return planned.cached
    async with get_async_client() as client:
        run = await aactive_run(client, planned)
        if run is None:
            view = auto_view(request.processor, widget=widget)
            return await aexecute(
                client, request, view=view, timeout=timeout, recorder=planned.recorder
            )
    # The identical run is still going: a worker thread follows it while this awaits.
    return await follow_in_background(
        get_client(),
        run,
        request=request,
        view=auto_view(request.processor, widget=widget),
        timeout=timeout,
        recorder=planned.recorder,
    )


def fetch(run_id: str, *, timeout: float | None = None, widget: bool = True) -> TaskResult:
    """The result of an earlier run by id; a run still going is followed live until it ends."""
    from .config import get_client
    from .runs.runner import fetch as fetch_run
    from .runs.tracking import StoreRecorder
    from .view.panel import auto_view

    view = auto_view("", widget=widget)
    recorder = StoreRecorder(_store())
    return fetch_run(get_client(), run_id, view=view, timeout=timeout, recorder=recorder)


@overload
def enrich(
    df: pd.DataFrame,
    output: str | Mapping[str, Any] | None = ...,
    processor: str = ...,
    input: str | None = ...,
    *,
    widget: bool = ...,
    chunk_size: int = ...,
    refresh: bool = ...,
    with_basis: Literal[False] = ...,
) -> pd.DataFrame: ...


@overload
def enrich(
    df: pd.DataFrame,
    output: str | Mapping[str, Any] | None = ...,
    processor: str = ...,
    input: str | None = ...,
    *,
    widget: bool = ...,
    chunk_size: int = ...,
    refresh: bool = ...,
    with_basis: Literal[True],
) -> tuple[pd.DataFrame, pd.DataFrame]: ...


def enrich(
    df: pd.DataFrame,
    output: str | Mapping[str, Any] | None = None,
    processor: str = "core",
    input: str | None = None,
    *,
    widget: bool = True,
    chunk_size: int = 1000,
    refresh: bool = False,
    with_basis: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Research every row of ``df`` in one task group; the live batch panel shows in a notebook.

    ``input`` is a template over the columns (``"Research {{name}} ({{website}})"``); None
    sends each row itself as a JSON object. ``output`` is a spec as for :func:`run`. Rows
    with identical inputs are researched once. Runs are added ``chunk_size`` at a time (at
    most 1,000) and recorded in the run store as they are created, so calling ``enrich``
    again with the same rows resumes an interrupted batch (adding only the runs it lacks) or
    re-reads a completed one; ``refresh=True`` researches every row again.

    Returns ``df`` (index and order kept) with one column per output field, its
    ``<field>_confidence`` and ``<field>_citations``, and ``_error`` for rows whose run
    failed. ``with_basis=True`` returns ``(enriched, basis_df)``, ``basis_df`` holding one
    line per citation of every row (``row`` is the row's index label). Raises SpecError
    (naming the row) before anything is sent when a row cannot become a request.
    """
    from .runs.batch import plan_batch

    plan = plan_batch(df, input_template=input, output=output, processor=processor)
    recipe = {"input": input, "output": output}
    result = _run_plan(
        plan,
        store=_store(),
        widget=widget,
        chunk_size=chunk_size,
        refresh=refresh,
        recipe=recipe,
    )
    enriched = result.frame(df)
    return (enriched, result.basis_df) if with_basis else enriched


def _run_plan(
    plan: BatchPlan,
    *,
    store: RunStore,
    widget: bool,
    chunk_size: int = 1000,
    refresh_hz: float | None = None,
    refresh: bool = False,
    refresh_hint: str = "refresh=True",
    recipe: Mapping[str, Any] | None = None,
    group: StoredRun | None = None,
) -> BatchResult:
    """Run ``plan`` as one recorded task group, drawn live by the batch view that fits here:
    an identical batch resumes (or re-reads) its group; ``group`` (a recorded one) attaches."""
    from .config import get_client, get_settings
    from .runs.batch_tracking import find_batch, group_to_attach, submit_batch
    from .runs.runner import MAX_REFRESH_HZ
    from .view.batch_panel import BatchFeed

    client, endpoint = get_client(), get_settings().endpoint
    if group is None:
        start = find_batch(
            client, store, plan, endpoint=endpoint, refresh=refresh, refresh_hint=refresh_hint
        )
    else:
        start = group_to_attach(store, group, plan)
    return submit_batch(
        client,
        plan,
        start,
        store=store,
        endpoint=endpoint,
        new_feed=lambda label: BatchFeed(
            _batch_view(widget), refresh_hz=refresh_hz or MAX_REFRESH_HZ, label=label
        ),
        recipe=recipe,
        chunk_size=chunk_size,
    )


def _batch_view(widget: bool) -> BatchView | None:
    """The widget panel in a kernel with ipywidgets, else its HTML form; None outside a kernel
    (terminal IPython has no batch view: one redrawn line per event would flood it)."""
    from .view.batch_panel import BatchPanel, HtmlBatchView
    from .view.panel import _has_ipywidgets, _shell

    shell = _shell()
    if shell is None or getattr(shell, "kernel", None) is None:
        return None
    return BatchPanel() if widget and _has_ipywidgets() else HtmlBatchView()


def _store() -> RunStore:
    """The magics' run store when the extension is loaded (so ``%config ParallelMagics`` applies
    to these functions too), else the default one."""
    from .config import get_store

    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    magics = shell.magics_manager.registry.get("ParallelMagics") if shell is not None else None
    return magics.store() if magics is not None else get_store()


def _request(
    input: str | Mapping[str, Any],
    processor: str,
    output: str | Mapping[str, Any] | None,
    options: dict[str, Any],
) -> TaskRequest:
    from .api.models import TaskRequest
    from .runs.runner import previous_interaction_id
    from .spec import input_from_value, output_to_task_spec, request_warnings, validate_request

    previous = options.pop("previous", None)
    unknown = set(options) - _REQUEST_OPTIONS
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(sorted(unknown))}; "
            f"the options are {', '.join(sorted(_REQUEST_OPTIONS | {'previous'}))}"
        )
    request = TaskRequest(
        processor=processor,
        input=input_from_value(input),
        task_spec=output_to_task_spec(output, processor),
        previous_interaction_id=None if previous is None else previous_interaction_id(previous),
        **options,
    )
    validate_request(request)
    for warning in request_warnings(request):
        print(f"parallel-nb: warning: {warning}", file=sys.stderr)
    return request


_REQUEST_OPTIONS = frozenset({"metadata", "source_policy", "location", "enable_events"})
