"""``%%parallel`` and ``%parallel``: parse the magic line, hand over to spec and runner, deliver.

The cell body goes to :func:`parallel_nb.spec.build_request` untouched (no IPython ``$var`` /
``{expr}`` expansion: JSON braces must survive); runs go through
:func:`parallel_nb.runs.tracking.submit`, which answers from the run store's cache, follows an
identical run still going, or creates and records a new one. Bad arguments or a bad cell raise
a one-line ``UsageError`` before anything is sent; a run that fails raises :class:`RunFailed` so
"Run All" stops. Defaults are traitlets, so ``%config ParallelMagics.processor = "pro"`` works,
and a per-cell option always wins over them.
"""

from __future__ import annotations

import json
import keyword
import re
import shlex
import sys
from argparse import ArgumentTypeError, Namespace
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import (
    Magics,
    cell_magic,
    line_magic,
    magics_class,
    no_var_expand,
)
from IPython.core.magic_arguments import (
    MagicArgumentParser,
    argument,
    magic_arguments,
)
from traitlets import Bool, Float, Int, TraitError, Unicode, validate

from .api.errors import ParallelError, RunFailed
from .api.processors import PROCESSORS, get_processor
from .api.validation import LIMITS

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import pandas as pd

    from .api.client import Client
    from .api.models import TaskRequest
    from .result import TaskResult
    from .runs.background import RunHandle
    from .runs.batch import BatchPlan
    from .runs.store import RunStore, StoredRun
    from .view.panel import RunView

__all__ = ["ParallelMagics"]

# Processor families of the table ("core", "ultra", ...): a first word such as "ultra16x" or
# "core-fast" names a processor even before the table learns of it.
_FAMILIES = sorted({re.sub(r"\d+x$", "", p.tier) for p in PROCESSORS.values()})
_PROCESSOR_SHAPE = re.compile(rf"(?:{'|'.join(_FAMILIES)})(?:\d+x)?(?:-fast)?")
_RUN_ID_SHAPE = re.compile(r"[A-Za-z]+_[0-9A-Za-z]{8,}")
_HISTORY_ROWS = 20
_DRY_RUN_INPUTS = 3
_COUNTRY_CODE = re.compile(r"[A-Za-z]{2}")


def _seconds(text: str) -> float:
    """The argparse type of ``--timeout``: seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ArgumentTypeError(f"expected a number of seconds, 0 or more, not {text!r}")
    return value


def _count(text: str) -> int:
    """The argparse type of ``history N``: a whole number, 1 or more."""
    if not text.isdigit() or int(text) < 1:
        raise ArgumentTypeError(f"expected a number of runs, 1 or more, not {text!r}")
    return int(text)


@magics_class
class ParallelMagics(Magics):
    """Run Parallel Task API research from notebook cells."""

    processor = Unicode(
        "core",
        help="Processor for cells that name none: lite, base, core, core2x, pro, ultra, "
        "ultra2x, ultra4x, ultra8x, each also as <name>-fast.",
    ).tag(config=True)
    timeout = Float(
        None,
        allow_none=True,
        help="Seconds to watch a run before giving up (None: until it ends). The run itself "
        "continues on the server; fetch it later with %parallel result RUN_ID.",
    ).tag(config=True)
    refresh_hz = Float(4.0, help="Most redraws of the live panel per second (at most 4).").tag(
        config=True
    )
    widget = Bool(
        True,
        help="Show the live ipywidgets panel; False shows an HTML output that updates in place.",
    ).tag(config=True)
    max_messages = Int(6, help="How many of the newest progress messages the panel shows.").tag(
        config=True
    )
    store_path = Unicode(
        None,
        allow_none=True,
        help="The run store's SQLite file (None: runs.sqlite3 in $PARALLEL_NB_DATA_DIR, else in "
        "the user data directory). Every run is recorded there; it is the cache of results.",
    ).tag(config=True)
    keep_input = Unicode(
        "preview",
        help="How much of each input the run store keeps: 'preview' (the first 200 "
        "characters), 'full' (the whole request), or 'none' (only its hash).",
    ).tag(config=True)

    @validate("refresh_hz")
    def _check_refresh_hz(self, proposal: dict[str, Any]) -> float:
        from .runs.runner import check_refresh_hz

        try:
            return check_refresh_hz(proposal["value"])
        except ValueError as exc:
            raise TraitError(str(exc)) from None

    @validate("keep_input")
    def _check_keep_input(self, proposal: dict[str, Any]) -> str:
        from .runs.store import KEEP_INPUT_MODES

        if proposal["value"] not in KEEP_INPUT_MODES:
            modes = ", ".join(map(repr, KEEP_INPUT_MODES))
            raise TraitError(f"keep_input must be one of {modes}, not {proposal['value']!r}")
        return proposal["value"]

    @validate("max_messages")
    def _check_max_messages(self, proposal: dict[str, Any]) -> int:
        if proposal["value"] < 0:
            raise TraitError(f"max_messages must be 0 or more, not {proposal['value']}")
        return proposal["value"]

    # -- %%parallel ----------------------------------------------------------------------

    @no_var_expand
    @magic_arguments(name="%parallel")  # the help's usage line reads "%%parallel ..."
    @argument(
        "first",
        nargs="?",
        metavar="PROCESSOR",
        help="Processor (lite, base, core, pro, ultra, ... or <name>-fast); a first word "
        "that is not a processor is taken as VAR.",
    )
    @argument(
        "second",
        nargs="?",
        metavar="VAR",
        help="Store the TaskResult in this variable and show only a summary.",
    )
    @argument("--processor", help="Processor (same as the PROCESSOR word).")
    @argument("--out", metavar="VAR", help="Store the TaskResult in VAR (same as the VAR word).")
    @argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="Stop watching after this long (the run continues on the server).",
    )
    @argument(
        "--dry-run",
        action="store_true",
        help="Show the request JSON and the documented cost per run (with --over: the row "
        "count, the first inputs and the estimated cost); send nothing.",
    )
    @argument(
        "--over",
        metavar="DATAFRAME",
        help="Enrich this DataFrame: one run per row (identical inputs once) in one task "
        "group; the body is a template over its columns, or empty to send each row as JSON.",
    )
    @argument(
        "--chunk-size",
        type=_count,
        metavar="N",
        help=f"With --over: add runs to the task group N at a time (at most "
        f"{LIMITS.group_inputs_per_request:,} per request, the default).",
    )
    @argument(
        "--widget",
        dest="widget",
        action="store_const",
        const=True,
        default=None,
        help="Show the live ipywidgets panel (the default).",
    )
    @argument(
        "--no-widget",
        dest="widget",
        action="store_const",
        const=False,
        help="Show the live view as HTML that updates in place, not as a widget.",
    )
    @argument(
        "--include-domains",
        metavar="DOMAINS",
        help="Comma-separated domains to search only (source_policy.include_domains).",
    )
    @argument(
        "--exclude-domains",
        metavar="DOMAINS",
        help="Comma-separated domains never to use (source_policy.exclude_domains).",
    )
    @argument(
        "--metadata",
        action="append",
        metavar="KEY=VALUE",
        help="Attach metadata to the run; repeat for several keys (quote values with spaces: "
        'note="two words").',
    )
    @argument(
        "--previous",
        metavar="RUN",
        help="Continue from an earlier run: a variable holding a TaskResult, or a run id.",
    )
    @argument(
        "--location",
        metavar="CC",
        help="Two-letter ISO country code to research from (advanced_settings.location).",
    )
    @argument(
        "--events",
        dest="enable_events",
        action="store_const",
        const=True,
        default=None,
        help="Ask for frequent progress events (enable_events; default: the processor's).",
    )
    @argument(
        "--no-events",
        dest="enable_events",
        action="store_const",
        const=False,
        help="Do not ask for frequent progress events.",
    )
    @argument(
        "--no-interpolate",
        action="store_true",
        help="Send {{name}} literally instead of filling it from the notebook's variables.",
    )
    @argument(
        "--refresh",
        action="store_true",
        help="Create a new run even if an identical one completed (cached) or is still going.",
    )
    @argument(
        "--bg",
        action="store_true",
        help="Return at once with a RunHandle (.result(), await, .status) while the panel "
        "keeps updating; several can run at once.",
    )
    @cell_magic("parallel")
    def parallel_cell(self, line: str, cell: str) -> TaskResult | RunHandle | None:
        """Run a Parallel Task API task: the cell body is the input, an optional spec follows.

        The first line is ``%%parallel [PROCESSOR] [VAR] [options]``. The body is the input
        (text, or a JSON object), then optionally a line ``---`` and the output spec: field
        lines ``name [(type)]: description``, a JSON schema, or a text description. Without a
        spec the processor chooses the output. ``{{name}}``, ``{{name.attr}}``,
        ``{{name[0]}}`` and ``{{name["key"]}}`` are filled from the notebook's variables.

        Examples::

            %%parallel
            What was the GDP of France in 2023?

            %%parallel core stripe
            {"company": "Stripe"}
            ---
            founded (integer): year the company was founded
            ceo: name of the current CEO
            hq_city: city of the headquarters

            %%parallel lite --dry-run --metadata team=research
            What companies has {{stripe["ceo"]}} founded?

            %%parallel core --previous stripe --include-domains stripe.com,sec.gov
            Who founded Stripe, and when?

            %%parallel pro report --exclude-domains reddit.com
            Write a research report on the James Webb Space Telescope

            %%parallel lite answer --bg
            What was the GDP of France in 2023?

            %%parallel core enriched --over companies
            Research {{name}} ({{website}})
            ---
            founded (integer): year founded
            ceo: the current CEO

        With ``--over DATAFRAME`` every row is researched in one task group (the live batch
        panel shows progress) and the result is the DataFrame with one column per output
        field, ``<field>_confidence``, ``<field>_citations`` and ``_error``, index and order
        kept; ``{{column}}`` in the body is filled from each row, and an empty body sends the
        row itself as a JSON object. ``--dry-run`` shows the row count, the first inputs and
        the estimated cost instead.

        With VAR the TaskResult is stored there and only a summary is shown; without VAR it
        is the cell's result (``Out[n]``; a trailing ``;`` hides it). ``result.output_df``
        and ``result.basis_df`` are DataFrames of the answer and its citations. A failed run
        raises ``RunFailed`` (with VAR, the failed result is still stored).

        Every run is recorded in the run store. Re-running a cell whose identical request
        completed returns the stored result at once (``result.cached``), without a new paid
        run; if that run is still going, the cell follows it instead of creating another.
        ``--refresh`` creates a new run regardless. ``--bg`` returns a RunHandle at once
        (``h.result(timeout)``, ``await h``, ``h.status``; with VAR, the handle is stored).
        Ctrl-C stops watching; the run goes on and ``%parallel attach RUN_ID`` follows it again.
        Defaults: ``%config ParallelMagics`` (processor, timeout, widget, refresh_hz,
        max_messages, store_path, keep_input); options on the line always win.
        """
        # Intermixed, so that options may also sit between the two words: "core --dry-run out".
        args = self.parallel_cell.parser.parse_intermixed_args(_split(line))
        processor, var = _processor_and_var(args)
        body, silenced = _without_silencing_semicolon(cell)
        if args.over is not None:
            enriched = self._enrich(body, processor or self.processor, args, var)
            return None if silenced else enriched
        if args.chunk_size is not None:
            raise UsageError("--chunk-size applies to batches only; use it with --over DATAFRAME")
        request = self._build(body, processor or self.processor, args)
        for warning in _request_warnings(request, body):
            print(f"parallel-nb: warning: {warning}", file=sys.stderr)
        if args.dry_run:
            print(_dry_run_text(request))
            return None
        timeout = _given(args.timeout, self.timeout)
        widget = _given(args.widget, self.widget)

        def start(client: Client) -> TaskResult | RunHandle:
            from .config import get_settings
            from .runs.tracking import submit

            return submit(
                client,
                request,
                store=self.store(),
                endpoint=get_settings().endpoint,
                new_view=lambda: self._view(request.processor, widget),
                refresh=args.refresh,
                refresh_hint="--refresh",
                background=args.bg,
                timeout=timeout,
                refresh_hz=self.refresh_hz,
            )

        result = self._deliver(start, request, var)
        return None if silenced else result

    # -- %parallel -------------------------------------------------------------------------

    @line_magic("parallel")
    def parallel_line(self, line: str) -> Any:
        """Parallel helpers: ``%parallel attach | result | history | cache clear | processors |
        status | help``.

        - ``%parallel attach RUN_ID [VAR] [--timeout SECONDS] [--bg]``: follow any run live
          again (one you interrupted, or from before a kernel restart) and get its result;
          with VAR, store it there.
        - ``%parallel result RUN_ID [VAR] [--timeout SECONDS] [--bg]``: the same.
        - ``%parallel history [N]``: the N newest runs of the run store (default 20) as a
          DataFrame: run_id, status, processor, age, input (preview), cache_hits.
        - ``%parallel cache clear``: forget the stored results, so identical cells run again
          (the runs stay in the history).
        - ``%parallel processors``: a DataFrame of the processors with their documented
          latency, price per run and rough field capacity.
        - ``%parallel status`` (or ``config``): where runs go (base URL, demo mode), the run
          store and the current defaults. The API key is never shown.
        - ``%parallel help``: this help and the ``%%parallel`` options.

        Runs are started with the cell magic: see ``%%parallel?``.
        """
        args = _LINE_PARSER.parse_args(_split(line))
        command = args.command or "help"
        if command == "processors":
            return _processors_frame()
        if command in ("attach", "result"):
            return self._attach(args)
        if command == "history":
            return self._history(args.n)
        if command == "cache":
            self._clear_cache()
            return None
        if command in ("status", "config"):
            print(self._status_text())
            return None
        print(_LINE_PARSER.format_help())
        print(self.parallel_cell.parser.format_help())
        return None

    # -- glue --------------------------------------------------------------------------------

    def _build(self, cell: str, processor: str, args: Namespace) -> TaskRequest:
        from .spec import SpecError, build_request

        try:
            return build_request(
                cell,
                processor=processor,
                namespace=self.shell.user_ns,
                interpolate=not args.no_interpolate,
                metadata=_metadata(args.metadata),
                source_policy=_source_policy(args.include_domains, args.exclude_domains),
                previous_interaction_id=self._previous(args.previous),
                location=_location(args.location),
                enable_events=args.enable_events,
            )
        except SpecError as exc:
            raise UsageError(str(exc)) from None

    def _enrich(
        self, body: str, processor: str, args: Namespace, var: str | None
    ) -> pd.DataFrame | None:
        """``--over``: plan one run per row of the named DataFrame, then run or describe it."""
        from .spec.grammar import split_body

        _reject_batch_options(args)
        limit = LIMITS.group_inputs_per_request
        if args.chunk_size is not None and args.chunk_size > limit:
            raise UsageError(
                f"--chunk-size {args.chunk_size}: the API accepts at most {limit:,} runs per "
                f"request; use a number from 1 to {limit:,}"
            )
        df = self._dataframe(args.over)
        template, spec = split_body(body)
        recipe = {
            "input": None if template.is_blank else template.text,
            "output": None if spec is None else spec.text,
            "over": args.over,
        }
        plan = _plan(df, recipe, processor, f"--over {args.over}")
        if args.dry_run:
            print(_batch_dry_run_text(plan))
            return None
        return self._run_batch(
            df,
            plan,
            var,
            chunk_size=args.chunk_size,
            widget=args.widget,
            refresh=args.refresh,
            recipe=recipe,
        )

    def _run_batch(
        self,
        df: pd.DataFrame,
        plan: BatchPlan,
        var: str | None,
        *,
        chunk_size: int | None = None,
        widget: bool | None = None,
        refresh: bool = False,
        recipe: dict[str, Any] | None = None,
        group: StoredRun | None = None,
    ) -> pd.DataFrame | None:
        """Run (or resume, or attach to) the batch; the enriched frame goes to ``var`` and its
        citations to ``var_basis``, or is the cell's value without ``var``."""
        from . import _run_plan

        try:
            result = _run_plan(
                plan,
                store=self.store(),
                widget=_given(widget, self.widget),
                chunk_size=chunk_size or LIMITS.group_inputs_per_request,
                refresh_hz=self.refresh_hz,
                refresh=refresh,
                refresh_hint="--refresh",
                recipe=recipe,
                group=group,
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        enriched = result.frame(df)
        if var is None:
            return enriched
        basis = f"{var}_basis"
        self.shell.push({var: enriched, basis: result.basis_df})
        print(
            f"parallel-nb: {len(df)} rows enriched into {var}, their citations into {basis} "
            f"({len(plan.requests)} runs, {result.failed} failed; task group "
            f"{result.taskgroup_id})"
        )
        return None

    def _dataframe(self, name: str) -> pd.DataFrame:
        import pandas as pd

        if name not in self.shell.user_ns:
            raise UsageError(
                f"--over {name}: there is no variable of that name; pass the name of a "
                "pandas DataFrame defined in the notebook"
            )
        value = self.shell.user_ns[name]
        if not isinstance(value, pd.DataFrame):
            raise UsageError(
                f"--over {name}: {name} is a {type(value).__name__}, not a pandas DataFrame; "
                f"convert it first, e.g. {name} = pd.DataFrame({name})"
            )
        return value

    def _previous(self, value: str | None) -> str | None:
        """The interaction id named by ``--previous``: a variable first, else a literal id."""
        if value is None:
            return None
        if value in self.shell.user_ns:
            from .runs.runner import previous_interaction_id

            try:
                return previous_interaction_id(self.shell.user_ns[value])
            except TypeError as exc:
                raise UsageError(f"--previous {value}: {exc}") from None
        if _RUN_ID_SHAPE.fullmatch(value):
            return value
        raise UsageError(
            f"--previous {value}: there is no variable of that name and it is not a run id "
            "(trun_...); pass the variable holding an earlier TaskResult, or its run id"
        )

    def store(self) -> RunStore:
        """The run store of ``store_path`` and ``keep_input`` (``parallel_nb.run`` uses it too)."""
        from .config import get_store

        return get_store(self.store_path, self.keep_input)

    def _attach(self, args: Namespace) -> TaskResult | RunHandle | pd.DataFrame | None:
        if args.run_id.startswith("tgrp_"):
            return self._attach_group(args)
        if args.over is not None:
            raise UsageError(
                f"--over is for task groups (tgrp_...); {args.run_id} is a single run, "
                f"attach to it without --over"
            )
        if args.var is not None:
            _check_var(args.var)
        timeout = _given(args.timeout, self.timeout)

        def start(client: Client) -> TaskResult | RunHandle:
            from .runs.background import follow_in_background
            from .runs.runner import fetch
            from .runs.tracking import StoreRecorder

            recorder = StoreRecorder(self.store())
            if not args.bg:
                view = self._view(self.processor, self.widget)
                return fetch(
                    client,
                    args.run_id,
                    view=view,
                    timeout=timeout,
                    refresh_hz=self.refresh_hz,
                    recorder=recorder,
                )
            run = client.retrieve_run(args.run_id)
            return follow_in_background(
                client,
                run,
                view=self._view(run.processor, self.widget),
                timeout=timeout,
                refresh_hz=self.refresh_hz,
                recorder=recorder,
            )

        return self._deliver(start, None, args.var)

    def _attach_group(self, args: Namespace) -> pd.DataFrame | None:
        """Resume or re-read a recorded batch: rows from the DataFrame it was started with,
        template and spec from its record."""
        taskgroup_id = args.run_id
        if args.bg or args.timeout is not None:
            raise UsageError(
                f"--bg and --timeout follow single runs; attaching to {taskgroup_id} runs in "
                "the cell (Ctrl-C stops watching, attach again to go on)"
            )
        if args.var is not None:
            _check_var(args.var)
        from .runs.batch_tracking import recorded_group

        try:
            stored = recorded_group(self.store(), taskgroup_id)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        recipe = stored.request
        if recipe is None:
            raise UsageError(
                f"the run store keeps no recipe for {taskgroup_id} (keep_input='none'); run the "
                "--over cell that started it again: an identical batch resumes its group"
            )
        over = args.over or recipe.get("over")
        if over is None:
            raise UsageError(
                f"name the DataFrame {taskgroup_id} was started with: "
                f"%parallel attach {taskgroup_id} --over DATAFRAME"
            )
        df = self._dataframe(over)
        plan = _plan(df, recipe, stored.processor, f"--over {over}")
        return self._run_batch(df, plan, args.var, group=stored)

    def _history(self, limit: int) -> pd.DataFrame:
        from .runs.tracking import history_frame

        store = self.store()
        frame = history_frame(store, limit)
        if frame.empty:
            print(f"parallel-nb: no runs recorded yet in {store.path}")
        return frame

    def _clear_cache(self) -> None:
        forgotten = self.store().clear_cache()
        results = "result" if forgotten == 1 else "results"
        print(
            f"parallel-nb: forgot {forgotten} stored {results}; identical cells now create new "
            "runs (the runs stay in %parallel history)"
        )

    def _view(self, processor: str, widget: bool) -> RunView | None:
        from .view.panel import auto_view

        return auto_view(processor, widget=widget, max_messages=self.max_messages)

    def _deliver(
        self,
        start: Callable[[Client], TaskResult | RunHandle],
        request: TaskRequest | None,
        var: str | None,
    ) -> TaskResult | RunHandle | None:
        """Run ``start``; store what it returns in ``var`` (showing a finished result's
        summary) or return it."""
        from .config import get_client
        from .result import TaskResult

        client = get_client()
        try:
            result = start(client)
        except RunFailed as exc:
            if var is not None:
                self._store_failed(client, exc, var, request)
            raise
        if var is None:
            return result
        self.shell.push({var: result})
        if isinstance(result, TaskResult):
            from IPython.display import display

            data, metadata = result.stored_bundle(var)
            display(data, metadata=metadata, raw=True)
        return None

    def _store_failed(
        self, client: Client, exc: RunFailed, var: str, request: TaskRequest | None
    ) -> None:
        from .result import TaskResult

        try:
            run = client.retrieve_run(exc.run_id)
        except ParallelError:
            return  # the RunFailed being raised says more than this second failure
        self.shell.push({var: TaskResult(run=run, output=None, request=request)})
        print(
            f"parallel-nb: the failed run is stored in {var} ({var}.status, {var}.run_id).",
            file=sys.stderr,
        )

    def _status_text(self) -> str:
        from . import __version__
        from .config import get_settings

        settings = get_settings()
        demo = (
            "yes: runs go to the embedded emulator (fixture answers, not the web); set "
            "PARALLEL_API_KEY to use Parallel"
            if settings.demo
            else "no"
        )
        timeout = "none" if self.timeout is None else f"{self.timeout:g} s"
        return "\n".join(
            [
                f"parallel-nb {__version__}",
                f"base URL:  {settings.base_url}",
                f"demo mode: {demo}",
                f"run store: {self.store().path} (keep_input={self.keep_input})",
                f"defaults:  processor={self.processor} timeout={timeout} "
                f"widget={self.widget} refresh_hz={self.refresh_hz:g} "
                f"max_messages={self.max_messages}  (%config ParallelMagics)",
            ]
        )


# -- parsing -------------------------------------------------------------------------------


def _split(line: str) -> list[str]:
    """A magic line split as a shell would: ``--metadata note="two words"`` works and the
    quotes are not kept (IPython's own splitting keeps them)."""
    try:
        return shlex.split(line)
    except ValueError as exc:  # unbalanced quotes
        raise UsageError(f"cannot split the magic line: {exc}") from None


def _line_parser() -> MagicArgumentParser:
    parser = MagicArgumentParser(
        prog="parallel", description="Parallel helpers. Runs start with %%parallel."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in (
        ("attach", "follow a run (or a batch) live again by id, and get its result"),
        ("result", "the same as attach"),
    ):
        follow = commands.add_parser(name, help=text)
        follow.add_argument(
            "run_id", metavar="RUN_ID", help="the run id, trun_..., or a batch's tgrp_..."
        )
        follow.add_argument(
            "var", nargs="?", metavar="VAR", help="store the TaskResult (or enriched frame) here"
        )
        follow.add_argument(
            "--over",
            metavar="DATAFRAME",
            help="for a tgrp_...: the DataFrame the batch was started with (default: the "
            "variable named when it started)",
        )
        follow.add_argument(
            "--timeout", type=_seconds, metavar="SECONDS", help="stop waiting after this long"
        )
        follow.add_argument(
            "--bg", action="store_true", help="return a RunHandle at once and follow meanwhile"
        )
    history = commands.add_parser("history", help="the newest runs of the run store")
    history.add_argument(
        "n", nargs="?", type=_count, default=_HISTORY_ROWS, metavar="N", help="how many runs"
    )
    cache = commands.add_parser("cache", help="cache clear: forget the stored results")
    cache.add_argument("action", choices=["clear"], metavar="clear")
    commands.add_parser("processors", help="the processors: latency, $ per run, ~max fields")
    commands.add_parser("status", help="base URL, demo mode and defaults (never the key)")
    commands.add_parser("config", help="same as status")
    commands.add_parser("help", help="this help")
    return parser


_LINE_PARSER = _line_parser()


def _processor_and_var(args: Namespace) -> tuple[str | None, str | None]:
    """The processor and VAR from ``[PROCESSOR] [VAR]`` and ``--processor`` / ``--out``."""
    processor, var = None, None
    if args.first is not None:
        if _is_processor(args.first):
            processor, var = args.first, args.second
        elif args.second is None:
            var = args.first
        else:
            known = ", ".join(name for name, p in PROCESSORS.items() if not p.is_fast)
            raise UsageError(
                f"{args.first!r} is not a processor; the line is %%parallel [PROCESSOR] [VAR] "
                f"[options] (processors: {known}, each also as <name>-fast)"
            )
    processor = _one_of("processor", processor, args.processor)
    var = _one_of("VAR", var, args.out)
    if var is not None:
        _check_var(var)
    return processor, var


def _given(option: Any, default: Any) -> Any:
    """A per-cell option wins over the configured default whenever it was given."""
    return default if option is None else option


def _without_silencing_semicolon(cell: str) -> tuple[str, bool]:
    """The body without a final ``;`` (IPython's "hide the result" mark), and whether it had
    one. Checked as text: IPython's ``@output_can_be_silenced`` tokenizes the body as Python,
    which raises on prose or JSON with uneven indentation after the run has been paid for."""
    stripped = cell.rstrip()
    if not stripped.endswith(";"):
        return cell, False
    return stripped[:-1] + cell[len(stripped) :], True


def _is_processor(word: str) -> bool:
    return word in PROCESSORS or _PROCESSOR_SHAPE.fullmatch(word) is not None


def _one_of(what: str, positional: str | None, option: str | None) -> str | None:
    if positional is not None and option is not None and positional != option:
        raise UsageError(f"two different {what}s given: {positional!r} and {option!r}; keep one")
    return option or positional


def _check_var(name: str) -> None:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise UsageError(f"{name!r} cannot be a variable name; use a Python identifier")


def _metadata(items: list[str] | None) -> dict[str, str] | None:
    if not items:
        return None
    metadata = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--metadata {item!r}: write KEY=VALUE, e.g. --metadata team=sales")
        metadata[key.strip()] = value
    return metadata


def _domains(option: str, value: str | None) -> list[str] | None:
    if value is None:
        return None
    domains = [d.strip() for d in value.split(",") if d.strip()]
    if not domains:
        raise UsageError(
            f"{option} needs domains separated by commas, e.g. {option} sec.gov,ft.com"
        )
    return domains


def _source_policy(include: str | None, exclude: str | None) -> dict[str, list[str]] | None:
    policy = {
        key: domains
        for key, domains in (
            ("include_domains", _domains("--include-domains", include)),
            ("exclude_domains", _domains("--exclude-domains", exclude)),
        )
        if domains is not None
    }
    return policy or None


def _location(value: str | None) -> str | None:
    if value is None:
        return None
    if not _COUNTRY_CODE.fullmatch(value):
        raise UsageError(f"--location {value}: use a two-letter ISO country code such as US or FR")
    return value.upper()


# Options of a single run that a batch does not take (name on the line, attribute, unset value).
_SINGLE_RUN_OPTIONS = (
    ("--timeout", "timeout", None),
    ("--include-domains", "include_domains", None),
    ("--exclude-domains", "exclude_domains", None),
    ("--metadata", "metadata", None),
    ("--previous", "previous", None),
    ("--location", "location", None),
    ("--events/--no-events", "enable_events", None),
    ("--no-interpolate", "no_interpolate", False),
    ("--bg", "bg", False),
)


def _reject_batch_options(args: Namespace) -> None:
    given = [flag for flag, name, unset in _SINGLE_RUN_OPTIONS if getattr(args, name) != unset]
    if given:
        raise UsageError(
            f"{', '.join(given)} cannot be used with --over (they apply to single runs); "
            "remove them from the line"
        )


def _plan(df: pd.DataFrame, recipe: Mapping[str, Any], processor: str, where: str) -> BatchPlan:
    """The batch of ``df``'s rows from a recipe's input template and output spec."""
    from .runs.batch import plan_batch
    from .spec import SpecError

    try:
        return plan_batch(
            df, input_template=recipe["input"], output=recipe["output"], processor=processor
        )
    except SpecError as exc:
        raise UsageError(f"{where}: {exc}") from None


def _request_warnings(request: TaskRequest, cell: str) -> list[str]:
    from .spec import request_warnings

    return request_warnings(request, cell)


# -- output --------------------------------------------------------------------------------


def _dry_run_text(request: TaskRequest) -> str:
    body = json.dumps(request.to_body(), indent=2, ensure_ascii=False)
    lines = [
        "Dry run: nothing was sent.",
        f"POST /v1/tasks/runs   parallel-beta: {','.join(request.beta_features())}",
        body,
        _cost_line(request.processor),
    ]
    return "\n".join(lines)


def _batch_dry_run_text(plan: BatchPlan) -> str:
    rows, unique = len(plan.row_requests), len(plan.requests)
    lines = [
        "Dry run: nothing was sent.",
        f"{rows} rows, {unique} unique inputs (identical inputs are researched once).",
        f"First inputs ({min(unique, _DRY_RUN_INPUTS)} of {unique}):",
        *(f"  {_input_text(r.input)}" for r in plan.requests[:_DRY_RUN_INPUTS]),
        _batch_cost_line(plan.processor, unique),
    ]
    return "\n".join(lines)


def _input_text(value: str | dict[str, Any]) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _batch_cost_line(name: str, runs: int) -> str:
    processor = get_processor(name)
    if processor is None:
        return f"{name}: not in the processor table, so no documented price to estimate from."
    cost = runs * processor.usd_per_1000_runs / 1000
    return (
        f"Estimated cost: {runs} runs × ${processor.usd_per_1000_runs:g} per 1,000 runs "
        f"({name}, documented price) = {_dollars(cost)}"
    )


def _dollars(amount: float) -> str:
    # Prices per 1,000 runs are whole dollars, so a tenth of a cent is exact: "$0.075".
    text = f"{amount:,.3f}"
    return f"${text[:-1] if text.endswith('0') else text}"


def _cost_line(name: str) -> str:
    processor = get_processor(name)
    if processor is None:
        return f"{name}: not in the processor table, so no documented price or latency."
    return (
        f"{name}: ${processor.usd_per_run:g} per run (documented price), typically "
        f"{_duration(processor.min_seconds)} – {_duration(processor.max_seconds)}."
    )


def _duration(seconds: float) -> str:
    """Seconds in the unit the docs use: "100 s", "5 min", "90 min", "2 h"."""
    if seconds < 60 or seconds % 60:
        return f"{seconds:g} s"
    if seconds % 3600:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"


def _processors_frame() -> Any:
    """The processor table as a DataFrame: latency range, $ per run and ~max output fields."""
    import pandas as pd

    rows = [
        {
            "processor": p.name,
            "latency": f"{_duration(p.min_seconds)} – {_duration(p.max_seconds)}",
            "usd_per_run": p.usd_per_run,
            "max_fields": p.max_fields,
        }
        for p in PROCESSORS.values()
    ]
    return pd.DataFrame(rows).set_index("processor")
