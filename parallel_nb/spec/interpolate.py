r"""Substitute ``{{name}}`` placeholders in a cell's input from the notebook's namespace.

A placeholder is a name followed by any chain of ``.attr``, ``[0]`` and ``["key"]`` steps.
Nothing is evaluated: ``{{__import__('os')}}`` is an error, not code. Single braces are left
alone, so JSON and code survive (unlike ``str.format`` over a prompt), and ``\{{`` writes a
literal ``{{``. In a JSON input, a string that is exactly one placeholder takes the value itself
(a number stays a number); everywhere else the value is written as text.
"""

from __future__ import annotations

import difflib
import inspect
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .grammar import Section, SpecError, json_data

__all__ = ["interpolate"]

_NAME = r"[^\W\d]\w*"
_TOKEN = re.compile(r"(?P<escape>\\\{\{)|\{\{(?P<expr>[^\n]*?)\}\}|(?P<open>\{\{)")
_ROOT = re.compile(rf"\s*(?P<name>{_NAME})")
_STEP = re.compile(
    rf"""\s*(?:\.\s*(?P<attr>{_NAME})
    |\[\s*(?:(?P<index>-?\d+)|"(?P<dq>[^"\\]*)"|'(?P<sq>[^'\\]*)')\s*\])""",
    re.VERBOSE,
)
_FORMS = '{{name}}, {{name.attr}}, {{name[0]}} and {{name["key"]}}'
_LITERAL_HINT = r"or write \{{ for literal braces"
_NOT_JSON = object()

Step = tuple[str, str | int]  # ("attr", name) or ("item", index or key)


@dataclass(frozen=True, slots=True)
class Placeholder:
    """One parsed ``{{...}}``: its text as written, the root name and the steps after it."""

    text: str
    name: str
    steps: tuple[Step, ...]


def interpolate(
    value: str | dict[str, Any], namespace: Mapping[str, Any], section: Section
) -> str | dict[str, Any]:
    """``value`` (text, or a decoded JSON object) with every placeholder substituted.

    ``section`` is where the value was written; errors point at its lines. Every placeholder
    is checked before any is resolved, so one error lists all unknown names.
    """
    found = [p for text in _strings(value) for p in _placeholders(text, section)]
    _check_names(found, namespace, section)
    if isinstance(value, str):
        return _render_text(value, namespace, section)
    rendered: dict[str, Any] = _render_json(value, namespace, section)
    return rendered


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value, keys included, in document order."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _placeholders(text: str, section: Section) -> Iterator[Placeholder]:
    for match in _TOKEN.finditer(text):
        if match["open"] is not None:
            fragment = text[match.start() :].split("\n", 1)[0]
            raise SpecError(
                section.line_of(fragment),
                f"'{{{{' in {fragment!r} is not closed on the same line — "
                f"close it with '}}}}', {_LITERAL_HINT}",
            )
        if match["expr"] is not None:
            yield _parse(match[0], match["expr"], section)


def _parse(text: str, expr: str, section: Section) -> Placeholder:
    """Parse the inside of ``{{...}}``; anything but a name and steps is an error."""
    root = _ROOT.match(expr)
    steps: list[Step] = []
    end = root.end() if root else 0
    while root and (step := _STEP.match(expr, end)):
        if step["attr"] is not None:
            steps.append(("attr", step["attr"]))
        elif step["index"] is not None:
            steps.append(("item", int(step["index"])))
        else:
            steps.append(("item", step["dq"] if step["dq"] is not None else step["sq"]))
        end = step.end()
    if root is None or expr[end:].strip():
        raise SpecError(
            section.line_of(text),
            f"{text} is not a placeholder: only {_FORMS} are substituted, never calls or "
            f"expressions — compute the value in a cell above, {_LITERAL_HINT}",
        )
    names = [root["name"], *(key for kind, key in steps if kind == "attr")]
    hidden = next((n for n in names if isinstance(n, str) and n.startswith("__")), None)
    if hidden is not None:
        raise SpecError(
            section.line_of(text),
            f"{text} uses {hidden!r}; names starting with '__' are not allowed in "
            "placeholders — compute the value in a cell above",
        )
    return Placeholder(text, root["name"], tuple(steps))


def _check_names(
    placeholders: list[Placeholder], namespace: Mapping[str, Any], section: Section
) -> None:
    unknown = {p.name: p for p in placeholders if p.name not in namespace}
    if not unknown:
        return
    listed = ", ".join(
        f"{name!r}{_did_you_mean(name, [n for n in namespace if isinstance(n, str)])}"
        for name in unknown
    )
    plural = len(unknown) > 1
    raise SpecError(
        section.line_of(next(iter(unknown.values())).text),
        f"unknown name{'s' if plural else ''} {listed} — define {'them' if plural else 'it'} "
        f"in a cell above, {_LITERAL_HINT}",
    )


def _did_you_mean(word: str, candidates: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or nothing. Private names
    (``_``, ``_i3``...) are only offered for a word that is private too."""
    if not word.startswith("_"):
        candidates = [c for c in candidates if not c.startswith("_")]
    close = difflib.get_close_matches(word, candidates, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _resolve(placeholder: Placeholder, namespace: Mapping[str, Any], section: Section) -> Any:
    value = namespace[placeholder.name]
    for kind, key in placeholder.steps:
        try:
            value = _step(value, kind, key)
        except Exception as exc:  # user objects may raise anything from a property
            raise SpecError(
                section.line_of(placeholder.text),
                f"{placeholder.text}: {_step_problem(value, kind, key, exc)} — fix the "
                "placeholder, or compute the value in a cell above",
            ) from None
    if inspect.isroutine(value):
        raise SpecError(
            section.line_of(placeholder.text),
            f"{placeholder.text} is a function or method and placeholders never call anything "
            "— compute the value in a cell above",
        )
    return value


def _step(value: Any, kind: str, key: str | int) -> Any:
    """One ``.attr`` or ``[key]`` step; on a mapping ``.name`` reads the key ``name``."""
    if kind == "attr" and not isinstance(value, Mapping):
        return getattr(value, str(key))
    return value[key]


def _step_problem(value: Any, kind: str, key: str | int, exc: Exception) -> str:
    kind_name = type(value).__name__
    if isinstance(exc, AttributeError):
        public = [n for n in dir(value) if not n.startswith("_")]
        return f"{kind_name} has no attribute {key!r}{_did_you_mean(str(key), public)}"
    if isinstance(exc, IndexError) and hasattr(value, "__len__"):
        return f"index {key} is out of range for a {kind_name} of length {len(value)}"
    if isinstance(exc, KeyError):
        keys = [str(k) for k in value] if isinstance(value, Mapping) else []
        return f"no key {key!r} in the {kind_name}{_did_you_mean(str(key), keys)}"
    if isinstance(exc, TypeError) and kind == "item":
        return f"a value of type {kind_name} cannot be indexed with {key!r}"
    return f"reading {key!r} raised {type(exc).__name__}: {exc}"


def _render_text(text: str, namespace: Mapping[str, Any], section: Section) -> str:
    def replace(match: re.Match[str]) -> str:
        if match["escape"] is not None:
            return "{{"
        placeholder = _parse(match[0], match["expr"], section)
        return _as_text(_resolve(placeholder, namespace, section))

    return _TOKEN.sub(replace, text)


def _render_json(value: Any, namespace: Mapping[str, Any], section: Section) -> Any:
    if isinstance(value, str):
        whole = _TOKEN.match(value)
        if whole and whole["expr"] is not None and whole.end() == len(value):
            resolved = _resolve(_parse(value, whole["expr"], section), namespace, section)
            as_json = _as_json(resolved)
            return _as_text(resolved) if as_json is _NOT_JSON else as_json
        return _render_text(value, namespace, section)
    if isinstance(value, Mapping):
        return {
            _render_text(key, namespace, section): _render_json(item, namespace, section)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_render_json(item, namespace, section) for item in value]
    return value


def _as_json(value: Any) -> Any:
    """``value`` as plain JSON data (tuples become lists), or ``_NOT_JSON``."""
    try:
        return json_data(value)
    except (TypeError, ValueError):
        return _NOT_JSON


def _as_text(value: Any) -> str:
    """Text for a value inside text: strings as they are, lists and dicts as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, (Mapping, list, tuple)):
        as_json = _as_json(value)
        if as_json is not _NOT_JSON:
            return json.dumps(as_json, ensure_ascii=False)
    return str(value)
