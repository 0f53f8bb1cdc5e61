"""Cell body -> TaskRequest, with the service's documented checks run locally.

Every problem the checks find is raised as a SpecError at the cell line to fix: a field's own
line, the input's first line, or line 1 (the ``%%parallel`` line) for options given there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..api.models import TaskRequest
from ..api.validation import validate_run_input
from .grammar import Section, parse_input, split_body
from .interpolate import interpolate as substitute
from .schema import ParsedSpec, describe, parse_spec, raise_first

__all__ = ["build_request", "request_warnings", "validate_request"]

Locate = Callable[[str], int | None]


def build_request(
    body: str,
    *,
    processor: str,
    namespace: Mapping[str, Any] | None,
    first_line: int = 2,
    interpolate: bool = True,
    metadata: dict[str, Any] | None = None,
    source_policy: dict[str, Any] | None = None,
    previous_interaction_id: str | None = None,
    location: str | None = None,
    enable_events: bool | None = None,
) -> TaskRequest:
    """The request a ``%%parallel`` cell body describes; raises SpecError naming the line.

    ``first_line`` is the cell line of the body's first line (the magic line is line 1).
    With ``interpolate`` false, ``{{...}}`` is sent exactly as written.
    """
    input_section, spec_section = split_body(body, first_line)
    value = parse_input(input_section)
    if interpolate:
        value = substitute(value, namespace or {}, input_section)
    spec = parse_spec(spec_section)
    request = TaskRequest(
        processor=processor,
        input=value,
        task_spec=spec.task_spec,
        metadata=metadata,
        source_policy=source_policy,
        previous_interaction_id=previous_interaction_id,
        location=location,
        enable_events=enable_events,
    )
    raise_first(validate_run_input(request.to_body()).errors, _locator(input_section, spec))
    return request


def validate_request(request: TaskRequest, body: str | None = None, *, first_line: int = 2) -> None:
    """Run the documented checks on any request; with the cell ``body`` it came from, the
    SpecError names the line, otherwise it has none."""
    raise_first(validate_run_input(request.to_body()).errors, _body_locator(body, first_line))


def request_warnings(
    request: TaskRequest, body: str | None = None, *, first_line: int = 2
) -> list[str]:
    """The warnings the service would attach to this run, as sentences; prefixed with
    ``line N:`` when the cell ``body`` the request was built from is given."""
    locate = _body_locator(body, first_line)
    warnings = []
    for problem in validate_run_input(request.to_body()).warnings:
        line = locate(problem.field)
        warnings.append(describe(problem) if line is None else f"line {line}: {describe(problem)}")
    return warnings


def _body_locator(body: str | None, first_line: int) -> Locate:
    if body is None:
        return lambda path: None
    input_section, spec_section = split_body(body, first_line)
    return _locator(input_section, parse_spec(spec_section))


def _locator(input_section: Section, spec: ParsedSpec) -> Locate:
    """Map a validation path to the cell line it came from."""
    magic_line = None if input_section.start is None else input_section.start - 1

    def locate(path: str) -> int | None:
        root = path.split(".", 1)[0]
        if root == "task_spec":
            return spec.line_of(path)
        if root == "input":
            return input_section.content_line
        return magic_line  # processor, metadata, source policy: options on the magic line

    return locate
