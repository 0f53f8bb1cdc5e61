"""``TaskResult``: the object a user keeps from a run — output, basis, DataFrames and displays.

It shows itself as static HTML and deterministic text (never a widget), so saved notebooks
render anywhere and notebook tests can compare the text. pandas is imported only when a
DataFrame is first asked for.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from parallel_nb.api.models import FieldBasis, RunWarning, TaskOutput, TaskRequest, TaskRun
from parallel_nb.view import frames
from parallel_nb.view.html import result_html, result_text

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TaskResult"]

_NO_OUTPUT = TaskOutput(type="json", content={})


class TaskResult:
    """A finished (or failed) run: ``output``, ``basis``, ``output_df``, ``basis_df`` and more.

    ``result["ceo"]`` reads a top-level output field. ``cached`` says the answer was replayed
    from the local cache rather than paid for again. The DataFrames are built once and then
    shared, so copy one before changing it in place.
    """

    def __init__(
        self,
        run: TaskRun,
        output: TaskOutput | None,
        request: TaskRequest | None = None,
        cached: bool = False,
    ) -> None:
        self.run = run
        self.task_output = output
        self.request = request
        self.cached = cached

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def status(self) -> str:
        return self.run.status

    @property
    def processor(self) -> str:
        return self.run.processor

    @property
    def error(self) -> str | None:
        """The run's error message when it failed, else None."""
        return self.run.error.message if self.run.error is not None else None

    @property
    def output(self) -> dict[str, Any] | str | None:
        """The answer: a dict for JSON output, markdown text for text output, None if none."""
        return self.task_output.content if self.task_output is not None else None

    @property
    def basis(self) -> list[FieldBasis]:
        return list(self.task_output.basis) if self.task_output is not None else []

    @property
    def warnings(self) -> list[RunWarning]:
        return list(self.run.warnings)

    @cached_property
    def output_df(self) -> pd.DataFrame:
        """One row per output leaf: ``field`` (dot path), ``value``, ``type``."""
        return frames.output_frame(self.task_output or _NO_OUTPUT)

    @cached_property
    def basis_df(self) -> pd.DataFrame:
        """One row per citation: ``field, confidence, reasoning, url, title, excerpt``."""
        return frames.basis_frame(self.task_output or _NO_OUTPUT)

    def __getitem__(self, name: str) -> Any:
        content = self.output
        if not isinstance(content, dict):
            kind = "no output" if content is None else "text output, not fields"
            raise KeyError(
                f"run {self.run_id} has {kind}, so there is no field {name!r}; "
                "use .output to see what it returned"
            )
        if name not in content:
            available = ", ".join(repr(key) for key in content) or "none"
            raise KeyError(f"no output field {name!r}; available fields: {available}")
        return content[name]

    def __contains__(self, name: object) -> bool:
        return isinstance(self.output, dict) and name in self.output

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data in the API's ``{"run": ..., "output": ...}`` shape, plus ``cached``
        and the ``request`` body when known."""
        data: dict[str, Any] = {
            "run": _json_data(self.run),
            "output": _json_data(self.task_output),
            "cached": self.cached,
        }
        if self.request is not None:
            data["request"] = self.request.to_body()
        return data

    def __repr__(self) -> str:
        return result_text(self)

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> tuple[dict[str, str], dict[str, Any]]:
        data = {"text/plain": result_text(self), "text/html": result_html(self)}
        return data, {"parallel_nb": self._provenance()}

    def stored_bundle(self, var: str) -> tuple[dict[str, str], dict[str, Any]]:
        """The display for a result kept in ``var``: the answer, not the citation table, plus
        a pointer to the variable's DataFrames."""
        text = f"{var} = {result_text(self)}\n(see {var}.output_df and {var}.basis_df)"
        data = {"text/plain": text, "text/html": result_html(self, basis=False, stored_in=var)}
        return data, {"parallel_nb": self._provenance()}

    def _provenance(self) -> dict[str, Any]:
        """Output metadata naming the run; a hash stands in for the request, never its text."""
        provenance: dict[str, Any] = {
            "run_id": self.run_id,
            "processor": self.processor,
            "cached": self.cached,
        }
        if self.request is not None:
            body = json.dumps(self.request.to_body(), sort_keys=True, separators=(",", ":"))
            provenance["request_sha256"] = hashlib.sha256(body.encode()).hexdigest()
        return provenance


def _json_data(value: Any) -> Any:
    """Models as plain dicts and lists, leaving out each model's ``raw`` copy of the wire data."""
    if is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _json_data(getattr(value, f.name)) for f in fields(value) if f.name != "raw"
        }
    if isinstance(value, Mapping):
        return {str(key): _json_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_data(item) for item in value]
    return value
