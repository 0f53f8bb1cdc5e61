"""What a simulated research run answers: fixtures matched against the input, projected onto
the requested output schema.

A fixture (a JSON file, format in docs/fixtures.md) holds facts with their evidence; the run's
output schema decides the shape of the answer: a JSON schema gets the facts projected onto its
properties, a text schema gets a markdown report, the auto schema gets the fixture's structured
content (JSON on ``pro`` and above, a report below). An input no fixture matches gets an honest
placeholder that conforms to the schema, says it is not research and cites nothing.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, NoReturn

from parallel_nb.api.processors import PROCESSORS, Processor

__all__ = [
    "FIXTURE_COMPANIES",
    "Answer",
    "Fixture",
    "FixtureError",
    "Knowledge",
    "Trace",
    "infer_schema",
    "input_text",
]

BUILTIN_DIR = Path(__file__).with_name("fixtures")
CONFIDENCES = ("high", "medium", "low")
PLACEHOLDER_TEXT = "unknown (no emulator fixture matched this input)"
MISSING_TEXT = "unknown (the emulator fixture has no fact for this field)"
NO_MATCH_MESSAGE = "no emulator fixture matched this input; the answer is a placeholder"
# The companies the built-in fixtures profile (fixtures/companies.json), for demos, tests and
# benchmarks that want real answers rather than placeholders.
FIXTURE_COMPANIES = (
    "Stripe",
    "Databricks",
    "Figma",
    "Shopify",
    "Airbnb",
    "Canva",
    "Snowflake",
    "NVIDIA",
    "OpenAI",
    "Anthropic",
)
FIXTURES_HINT = "add a fixture for this input (see docs/fixtures.md) and pass it with --fixtures"

_FIXTURE_KEYS = frozenset(
    {"id", "match", "facts", "report", "auto", "fail", "trace", "sources", "description"}
)
_MATCH_KEYS = frozenset({"keywords", "regex", "processors"})
_FACT_KEYS = frozenset({"value", "confidence", "reasoning", "citations", "aliases"})
_CITATION_KEYS = frozenset({"url", "title", "excerpts"})
_TRACE_KEYS = frozenset({"plan", "search", "result"})
_STOPWORDS = frozenset(
    {
        "a", "about", "an", "and", "are", "as", "at", "be", "by", "can", "could", "did", "do",
        "does", "for", "from", "had", "has", "have", "how", "i", "in", "is", "it", "its", "me",
        "my", "of", "on", "or", "our", "please", "should", "tell", "than", "that", "the", "their",
        "them", "there", "these", "this", "those", "to", "us", "was", "we", "were", "what", "when",
        "where", "which", "who", "whom", "whose", "why", "will", "with", "would", "you", "your",
    }
)  # fmt: skip
_PROCESSOR_NAMES = frozenset(PROCESSORS) | {p.tier for p in PROCESSORS.values()}


class FixtureError(ValueError):
    """A fixture file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class Trace:
    """The progress a run reports: messages in order, and the sources it read."""

    plan: list[str]
    searches: list[str]
    results: list[str]
    sources: list[str]
    sources_considered: int
    sources_read: int


@dataclass(slots=True)
class Answer:
    """A run's outcome: the wire ``output`` object, or an ``error`` for a scripted failure."""

    output: dict[str, Any] | None
    error: str | None
    warnings: list[dict[str, Any]]
    trace: Trace
    fixture_id: str | None


@dataclass(frozen=True, slots=True)
class Evidence:
    """Why a value is believed: the basis of one field without its name."""

    citations: tuple[Mapping[str, Any], ...]
    reasoning: str
    confidence: str

    def basis(self, path: str) -> dict[str, Any]:
        return {
            "field": path,
            "citations": [_copy_citation(c) for c in self.citations],
            "reasoning": self.reasoning,
            "confidence": self.confidence,
        }


def _copy_citation(citation: Mapping[str, Any]) -> dict[str, Any]:
    excerpts = citation.get("excerpts")
    return {
        "url": citation["url"],
        "title": citation.get("title"),
        "excerpts": None if excerpts is None else list(excerpts),
    }


@dataclass(frozen=True, slots=True)
class Fact:
    name: str
    value: Any
    evidence: Evidence
    aliases: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Fixture:
    """One scripted answer, as loaded from a fixture file."""

    id: str
    origin: str
    user: bool
    keywords: tuple[str, ...]
    regex: re.Pattern[str] | None
    processors: frozenset[str] | None
    facts: tuple[Fact, ...]
    report: str | None
    auto: Mapping[str, Any] | None
    fail: str | None
    plan: tuple[str, ...]
    searches: tuple[str, ...]
    results: tuple[str, ...]
    sources: tuple[str, ...]
    _keyword_patterns: tuple[re.Pattern[str], ...] = field(repr=False, default=())
    _index: Mapping[str, Fact] = field(repr=False, default_factory=dict)

    @property
    def specificity(self) -> int:
        """How narrowly the fixture matches: its keyword count, a regex counting as one."""
        return len(self.keywords) + (1 if self.regex is not None else 0)

    def matches(self, text: str, processor: Processor | None) -> bool:
        if (
            self.processors is not None
            and processor is not None
            and not {processor.name, processor.tier} & self.processors
        ):
            return False
        if not all(p.search(text) for p in self._keyword_patterns):
            return False
        return self.regex is None or self.regex.search(text) is not None

    def fact(self, name: str) -> Fact | None:
        """The fact a requested field name refers to (normalized, aliases included)."""
        return self._index.get(_norm(name))


# ---------------------------------------------------------------------------------------------
# Loading


class _Reader:
    """Checks one fixture object field by field, raising errors that name file and fixture."""

    def __init__(self, origin: str, position: int, raw: Any) -> None:
        self.origin = origin
        self.where = f"{origin}: fixture #{position + 1}"
        if not isinstance(raw, Mapping):
            self.fail(f"must be a JSON object, not {type(raw).__name__}")
        self.raw = raw
        ident = raw.get("id")
        if not isinstance(ident, str) or not ident.strip():
            self.fail('needs an "id": a non-empty string naming the fixture')
        self.where = f"{origin}: fixture {ident!r}"

    def fail(self, problem: str) -> NoReturn:
        raise FixtureError(f"{self.where}: {problem}")

    def keys(self, value: Mapping[str, Any], allowed: frozenset[str], what: str) -> None:
        unknown = sorted(set(value) - allowed)
        if unknown:
            self.fail(
                f"{what} has unknown key(s) {', '.join(map(repr, unknown))}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )

    def strings(self, value: Any, what: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail(f"{what} must be a list of non-empty strings")
        return tuple(value)

    def url(self, value: Any, what: str) -> str:
        # Any text is accepted, as the real service may send any text as a URL: fixtures must
        # be able to script javascript: or malformed URLs to test that the views never link them.
        if not isinstance(value, str) or not value.strip():
            self.fail(f"{what} must be a non-empty string (the URL), not {value!r}")
        return value

    def fixture(self, user: bool) -> Fixture:
        raw = self.raw
        self.keys(raw, _FIXTURE_KEYS, "the fixture")
        keywords, regex, processors = self.match(raw.get("match"))
        facts = tuple(self.fact(name, value) for name, value in self.mapping(raw, "facts").items())
        trace = self.mapping(raw, "trace")
        self.keys(trace, _TRACE_KEYS, '"trace"')
        return Fixture(
            id=raw["id"],
            origin=self.origin,
            user=user,
            keywords=keywords,
            regex=regex,
            processors=processors,
            facts=facts,
            report=self.optional_str(raw, "report"),
            auto=self.auto(raw.get("auto")),
            fail=self.failure(raw.get("fail")),
            plan=self.strings(trace.get("plan"), '"trace.plan"'),
            searches=self.strings(trace.get("search"), '"trace.search"'),
            results=self.strings(trace.get("result"), '"trace.result"'),
            sources=tuple(self.url(u, '"sources" entry') for u in raw.get("sources") or ()),
            _keyword_patterns=tuple(_word_pattern(k) for k in keywords),
            _index=self.index(facts),
        )

    def mapping(self, raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = raw.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(f'"{key}" must be a JSON object')
        return value

    def optional_str(self, raw: Mapping[str, Any], key: str) -> str | None:
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            self.fail(f'"{key}" must be a string')
        return value

    def match(
        self, value: Any
    ) -> tuple[tuple[str, ...], re.Pattern[str] | None, frozenset[str] | None]:
        if not isinstance(value, Mapping):
            self.fail('needs a "match" object, e.g. {"keywords": ["stripe"]}')
        self.keys(value, _MATCH_KEYS, '"match"')
        keywords = tuple(k.strip().lower() for k in self.strings(value.get("keywords"), "keywords"))
        regex = None
        if value.get("regex") is not None:
            try:
                regex = re.compile(value["regex"], re.IGNORECASE)
            except (re.error, TypeError) as exc:
                self.fail(f'"match.regex" is not a valid regular expression: {exc}')
        if not keywords and regex is None:
            self.fail('"match" needs at least one keyword or a regex, else it matches everything')
        processors = None
        if value.get("processors") is not None:
            names = self.strings(value["processors"], '"match.processors"')
            unknown = sorted(set(names) - _PROCESSOR_NAMES)
            if unknown:
                self.fail(f'"match.processors" names unknown processor(s): {", ".join(unknown)}')
            processors = frozenset(names)
        return keywords, regex, processors

    def fact(self, name: str, raw: Any) -> Fact:
        what = f'fact "{name}"'
        if not _norm(name):
            self.fail(f"{what}: a fact name needs at least one letter or digit")
        if not (isinstance(raw, Mapping) and "value" in raw):
            if isinstance(raw, Mapping) and _FACT_KEYS & set(raw):
                self.fail(f'{what} looks like a full fact but has no "value"')
            raw = {"value": raw}
        self.keys(raw, _FACT_KEYS, what)
        confidence = raw.get("confidence", "medium")
        if confidence not in CONFIDENCES:
            self.fail(f'{what}: "confidence" must be one of {", ".join(CONFIDENCES)}')
        citations = tuple(self.citation(c, what) for c in raw.get("citations") or ())
        reasoning = raw.get("reasoning") or _default_reasoning(citations)
        if not isinstance(reasoning, str):
            self.fail(f'{what}: "reasoning" must be a string')
        evidence = Evidence(citations, reasoning, confidence)
        return Fact(
            name, raw["value"], evidence, self.strings(raw.get("aliases"), f"{what} aliases")
        )

    def citation(self, raw: Any, what: str) -> Mapping[str, Any]:
        if isinstance(raw, str):
            raw = {"url": raw}
        if not isinstance(raw, Mapping):
            self.fail(f"{what}: a citation is a URL or an object {{url, title, excerpts}}")
        self.keys(raw, _CITATION_KEYS, f"{what} citation")
        title = raw.get("title")
        if title is not None and not isinstance(title, str):
            self.fail(f'{what}: citation "title" must be a string')
        excerpts = raw.get("excerpts")
        if excerpts is not None:
            excerpts = list(self.strings(excerpts, f"{what} citation excerpts"))
        return {"url": self.url(raw.get("url"), f"{what} citation url"), "title": title,
                "excerpts": excerpts}  # fmt: skip

    def index(self, facts: Sequence[Fact]) -> dict[str, Fact]:
        index: dict[str, Fact] = {}
        for fact in facts:
            for name in (fact.name, *fact.aliases):
                key = _norm(name)
                other = index.get(key)
                if other is not None and other is not fact:
                    self.fail(f'"{name}" names both fact "{other.name}" and fact "{fact.name}"')
                index[key] = fact
        return index

    def auto(self, value: Any) -> Mapping[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, Mapping) or not value:
            self.fail('"auto" must be a non-empty JSON object (the auto-schema content)')
        try:
            infer_schema(value)
        except ValueError as exc:
            self.fail(f'"auto": {exc}')
        return value

    def failure(self, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, Mapping) or not isinstance(value.get("message"), str):
            self.fail('"fail" must be an object {"message": "why the run failed"}')
        self.keys(value, frozenset({"message"}), '"fail"')
        return value["message"]


def _default_reasoning(citations: Sequence[Mapping[str, Any]]) -> str:
    titles = [c.get("title") or c["url"] for c in citations]
    if not titles:
        return "Stated by the fixture; no source was given."
    return f"Stated in {', '.join(titles)}."


def _word_pattern(keyword: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in keyword.split()]
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.IGNORECASE)


def _read_file(path: Path, user: bool) -> list[Fixture]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FixtureError(f"{path}: cannot read the fixture file: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise FixtureError(f"{path}: not valid JSON: {exc}") from exc
    items = raw if isinstance(raw, list) else [raw]
    return [_Reader(str(path), i, item).fixture(user) for i, item in enumerate(items)]


def _fixture_files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(path.glob("*.json"))
        elif path.is_file():
            yield path
        else:
            raise FixtureError(f"{path}: no such fixture file or directory")


@lru_cache(maxsize=1)
def _builtin() -> tuple[Fixture, ...]:
    return tuple(f for p in _fixture_files([BUILTIN_DIR]) for f in _read_file(p, user=False))


# ---------------------------------------------------------------------------------------------
# Knowledge


class Knowledge:
    """The fixtures an emulator answers from; ``answer`` turns a run request into an Answer."""

    def __init__(self, fixtures: Iterable[Fixture]) -> None:
        by_id: dict[str, Fixture] = {}
        for fixture in fixtures:
            # A later fixture with the same id replaces the earlier one (users override built-ins).
            by_id.pop(fixture.id, None)
            by_id[fixture.id] = fixture
        self.fixtures: tuple[Fixture, ...] = tuple(by_id.values())

    @classmethod
    def load(cls, extra: str | Path | Iterable[str | Path] | None = None) -> Knowledge:
        """The built-in fixtures plus user fixture files or directories (``*.json``)."""
        if extra is None:
            extra_paths: list[Path] = []
        elif isinstance(extra, (str, Path)):
            extra_paths = [Path(extra)]
        else:
            extra_paths = [Path(p) for p in extra]
        user = [f for p in _fixture_files(extra_paths) for f in _read_file(p, user=True)]
        return cls([*_builtin(), *user])

    def match(
        self, input: str | Mapping[str, Any], processor: Processor | None = None
    ) -> Fixture | None:
        """The most specific fixture matching the input; user, then later, fixtures win ties."""
        text = input_text(input)
        best: Fixture | None = None
        best_rank: tuple[int, int, int] = (-1, -1, -1)
        for order, fixture in enumerate(self.fixtures):
            rank = (fixture.specificity, int(fixture.user), order)
            if rank > best_rank and fixture.matches(text, processor):
                best, best_rank = fixture, rank
        return best

    def answer(
        self,
        input: str | Mapping[str, Any],
        output_schema: Mapping[str, Any],
        processor: Processor,
        rng: random.Random,
    ) -> Answer:
        """What a run with this input, (normalized) output schema and processor returns."""
        fixture = self.match(input, processor)
        kind = output_schema.get("type", "json")
        if kind == "auto" and not processor.is_premium:
            kind = "text"
        fields = _top_level_fields(output_schema) if kind == "json" else []
        trace = _trace(fixture, input, fields, processor, rng)
        if fixture is None:
            warning = {"type": "warning", "message": NO_MATCH_MESSAGE,
                       "detail": {"input": _preview(input), "hint": FIXTURES_HINT}}  # fmt: skip
            return Answer(
                _placeholder_output(kind, output_schema, input), None, [warning], trace, None
            )
        if fixture.fail is not None:
            return Answer(None, fixture.fail, [], trace, fixture.id)
        if kind == "json":
            output, warnings = _json_output(fixture, output_schema["json_schema"])
        elif kind == "auto":
            output, warnings = _auto_output(fixture), []
        else:
            output, warnings = _text_output(fixture), []
        return Answer(output, None, warnings, trace, fixture.id)


# ---------------------------------------------------------------------------------------------
# Input text


def input_text(input: str | Mapping[str, Any]) -> str:
    """The text fixtures match against: the string, or an object's keys and values, one per line."""
    if isinstance(input, str):
        return input
    return "\n".join(_flatten(input))


def _flatten(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key)
            yield from _flatten(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _flatten(item)
    elif value is not None:
        yield str(value)


def _subject(input: str | Mapping[str, Any]) -> str:
    if isinstance(input, str):
        text = " ".join(input.split())
    else:
        text = ", ".join(f"{k}: {v}" for k, v in input.items() if isinstance(v, (str, int, float)))
    return text if len(text) <= 120 else text[:117].rstrip() + "..."


def _preview(input: str | Mapping[str, Any]) -> str:
    text = " ".join(input_text(input).split())
    return text if len(text) <= 200 else text[:197] + "..."


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


# ---------------------------------------------------------------------------------------------
# JSON schema projection


_PLACEHOLDER_REASONING = (
    "Placeholder from the parallel-nb emulator, not research: no emulator fixture matched this "
    "input, so nothing was looked up."
)


@dataclass(slots=True)
class _Projection:
    """Basis entries and unanswered fields collected while walking a schema."""

    root: Mapping[str, Any]
    placeholder: Evidence
    placeholder_text: str
    basis: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def resolve(self, node: Any) -> Mapping[str, Any]:
        """A schema node with local ``$ref``s (pydantic's ``#/$defs/...``) followed."""
        hops = 0
        while isinstance(node, Mapping) and isinstance(node.get("$ref"), str) and hops < 32:
            target: Any = self.root
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target.get(part) if isinstance(target, Mapping) else None
            node, hops = target, hops + 1
        return node if isinstance(node, Mapping) else {}

    def choose(self, node: Any, value: Any) -> Mapping[str, Any]:
        """The resolved node, or for ``anyOf``/``oneOf`` the alternative that fits ``value``."""
        node = self.resolve(node)
        alternatives = [self.resolve(a) for a in node.get("anyOf") or node.get("oneOf") or ()]
        if not alternatives:
            return node
        if value is None:
            fits = [a for a in alternatives if "null" in _types(a)]
        elif isinstance(value, Mapping):
            fits = [a for a in alternatives if _is_object(a)]
        elif isinstance(value, list):
            fits = [a for a in alternatives if "array" in _types(a)]
        else:
            fits = []
        others = [a for a in alternatives if _types(a) != {"null"}]
        return (fits or others or alternatives)[0]

    def attempt(self, node: Any, path: str, value: Any, evidence: Evidence) -> Any:
        """``fill`` with a fact value, or the placeholder when the value does not fit."""
        if value is None:
            return self.absent(node, path)
        basis_mark, missing_mark = len(self.basis), len(self.missing)
        try:
            return self.fill(node, path, value, evidence)
        except _Mismatch:
            del self.basis[basis_mark:], self.missing[missing_mark:]
            return self.absent(node, path)

    def absent(self, node: Any, path: str) -> Any:
        """The placeholder for an unanswered field, with its low-confidence basis."""
        self.missing.append(path)
        return self.fill(node, path, None, self.placeholder)

    def fill(self, node: Any, path: str, value: Any, evidence: Evidence) -> Any:
        """``value`` (None = unanswered) shaped by schema ``node``, recording basis entries."""
        node = self.choose(node, value)
        self.basis.append(evidence.basis(path))
        if value is None:
            if _is_object(node) and "null" not in _types(node):
                return self.members(node, path, {}, evidence)
            return _placeholder_value(node, self.placeholder_text)
        if _is_object(node):
            if not isinstance(value, Mapping):
                raise _Mismatch(f"{value!r} is not an object")
            return self.members(node, path, value, evidence)
        if "array" in _types(node):
            items = value if isinstance(value, list) else [value]
            return [self.fill(node.get("items"), f"{path}.{i}", v, evidence)
                    for i, v in enumerate(items)]  # fmt: skip
        return _conform(node, value)

    def members(
        self, node: Mapping[str, Any], path: str, scope: Mapping[str, Any], evidence: Evidence
    ) -> dict[str, Any]:
        """An object's properties taken from ``scope``; an empty scope means unanswered."""
        by_name = {_norm(k): v for k, v in scope.items()}
        out: dict[str, Any] = {}
        for name, sub in (node.get("properties") or {}).items():
            sub_path = f"{path}.{name}" if path else name
            if scope:
                out[name] = self.attempt(sub, sub_path, by_name.get(_norm(name)), evidence)
            else:
                out[name] = self.fill(sub, sub_path, None, evidence)
        return out


def _types(node: Mapping[str, Any]) -> set[str]:
    kind = node.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return {k for k in kind if isinstance(k, str)}
    return set()


def _is_object(node: Mapping[str, Any]) -> bool:
    return isinstance(node.get("properties"), Mapping) and (
        not _types(node) or "object" in _types(node)
    )


def _placeholder_value(node: Mapping[str, Any], text: str) -> Any:
    """The honest empty value of a schema node: null if allowed, else the type's zero value."""
    types = _types(node)
    if "null" in types:
        return None
    if isinstance(node.get("enum"), list) and node["enum"]:
        return copy.deepcopy(node["enum"][0])
    if "const" in node:
        return copy.deepcopy(node["const"])
    for kind, empty in (("string", text), ("integer", 0), ("number", 0),
                        ("boolean", False), ("array", []), ("object", {})):  # fmt: skip
        if kind in types:
            return empty
    return text


_NUMBER = re.compile(
    r"(?<![\w.])(-?\d[\d,]*(?:\.\d+)?)(?:\s*(thousand|million|billion|trillion|bn|tn)\b)?",
    re.IGNORECASE,
)
_MAGNITUDES = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "bn": 10**9,
               "trillion": 10**12, "tn": 10**12}  # fmt: skip
_KINDS = ("integer", "number", "boolean", "string")
_BOOLEANS = {"true": True, "yes": True, "false": False, "no": False}


class _Mismatch(ValueError):
    """A fact value that cannot be given in the requested type."""


def _conform(node: Mapping[str, Any], value: Any) -> Any:
    """``value`` converted to the node's type or enum; raises _Mismatch when it cannot be."""
    enum = node.get("enum")
    if isinstance(enum, list):
        for option in enum:
            if option == value or (
                isinstance(option, str) and str(value).lower() == option.lower()
            ):
                return copy.deepcopy(option)
        raise _Mismatch(f"{value!r} is not one of {enum!r}")
    types = _types(node)
    if not types:
        return copy.deepcopy(value)
    if value is None and "null" in types:
        return None
    # The value's own type first, so ["string", "integer"] keeps "about 8,000" a string.
    for kind in sorted(types, key=lambda k: (k != _json_type(value), _rank(k))):
        try:
            return _as(kind, value)
        except _Mismatch:
            continue
    raise _Mismatch(f"{value!r} is not of type {' or '.join(sorted(types))}")


def _rank(kind: str) -> int:
    return _KINDS.index(kind) if kind in _KINDS else len(_KINDS)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string" if isinstance(value, str) else "other"


def _as(kind: str, value: Any) -> Any:
    if kind == "string":
        return _as_string(value)
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOLEANS:
            return _BOOLEANS[value.strip().lower()]
    elif kind == "object" and isinstance(value, Mapping):
        return copy.deepcopy(dict(value))
    elif kind in ("integer", "number") and not isinstance(value, bool):
        number = _as_number(value)
        if number is not None and (kind == "number" or float(number).is_integer()):
            return number if kind == "number" else int(number)
    raise _Mismatch(f"{value!r} is not a {kind}")


def _as_number(value: Any) -> int | float | None:
    """A number, or the first number written in a string ("about US$3.03 trillion")."""
    if isinstance(value, (int, float)) and math.isfinite(value):
        return value
    match = _NUMBER.search(value) if isinstance(value, str) else None
    if match is None:
        return None
    # Decimal keeps "3.03 trillion" an exact integer where float arithmetic would not.
    number = Decimal(match.group(1).replace(",", ""))
    if match.group(2):
        number *= _MAGNITUDES[match.group(2).lower()]
    return int(number) if number == number.to_integral_value() else float(number)


def _as_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ", ".join(_as_string(v) for v in value)
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_as_string(v)}" for k, v in value.items())
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _top_level_fields(output_schema: Mapping[str, Any]) -> list[str]:
    schema = output_schema.get("json_schema")
    props = schema.get("properties") if isinstance(schema, Mapping) else None
    return list(props) if isinstance(props, Mapping) else []


def _json_output(
    fixture: Fixture, schema: Mapping[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    unanswered = Evidence(
        (), f"Placeholder from the parallel-nb emulator, not research: fixture "
        f"{fixture.id!r} has no usable fact for this field.", "low",
    )  # fmt: skip
    projection = _Projection(schema, unanswered, MISSING_TEXT)
    content: dict[str, Any] = {}
    for name, node in (projection.resolve(schema).get("properties") or {}).items():
        fact = fixture.fact(name)
        value = None if fact is None else fact.value
        content[name] = projection.attempt(node, name, value, fact.evidence if fact else unanswered)
    warnings = []
    if projection.missing:
        warnings.append({
            "type": "warning",
            "message": f"the emulator fixture {fixture.id!r} has no usable fact for "
            f"{', '.join(projection.missing)}; placeholder value(s) returned",
            "detail": {"fixture_id": fixture.id, "fields": projection.missing},
        })  # fmt: skip
    return _json_wire(content, projection.basis, None), warnings


def _json_wire(
    content: Mapping[str, Any], basis: list[dict[str, Any]], schema: Mapping[str, Any] | None
) -> dict[str, Any]:
    return {
        "type": "json",
        "content": content,
        "basis": basis,
        "mcp_tool_calls": None,
        "beta_fields": None,
        "output_schema": None if schema is None else {"type": "json", "json_schema": schema},
    }


def _text_wire(content: str, basis: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "text",
        "content": content,
        "basis": [basis],
        "mcp_tool_calls": None,
        "beta_fields": None,
    }


# ---------------------------------------------------------------------------------------------
# Placeholder (no fixture matched)


def _placeholder_output(
    kind: str, output_schema: Mapping[str, Any], input: str | Mapping[str, Any]
) -> dict[str, Any]:
    evidence = Evidence((), _PLACEHOLDER_REASONING, "low")
    if kind == "json":
        schema = output_schema["json_schema"]
        projection = _Projection(schema, evidence, PLACEHOLDER_TEXT)
        root = projection.resolve(schema)
        content = projection.members(root, "", {}, evidence)
        return _json_wire(content, projection.basis, None)
    if kind == "auto":
        content = {"summary": PLACEHOLDER_TEXT}
        return _json_wire(content, [evidence.basis("summary")], infer_schema(content))
    report = (
        "# No emulator answer\n\n"
        "The parallel-nb emulator has no fixture matching this input, so this is a placeholder, "
        "not research: nothing was looked up and nothing is cited.\n\n"
        f"> {_preview(input)}\n\n"
        "To script an answer, add a fixture file (see docs/fixtures.md).\n"
    )
    return _text_wire(report, evidence.basis("output"))


# ---------------------------------------------------------------------------------------------
# Text and auto outputs


def _all_citations(fixture: Fixture) -> list[dict[str, Any]]:
    """Every citation of the fixture's facts, then its other sources; one per URL."""
    seen: dict[str, dict[str, Any]] = {}
    for fact in fixture.facts:
        for citation in fact.evidence.citations:
            seen.setdefault(citation["url"], _copy_citation(citation))
    for url in fixture.sources:
        seen.setdefault(url, {"url": url, "title": None, "excerpts": None})
    return list(seen.values())


def _lowest_confidence(fixture: Fixture) -> str:
    ranks = [CONFIDENCES.index(f.evidence.confidence) for f in fixture.facts]
    return CONFIDENCES[max(ranks)] if ranks else "medium"


def _text_output(fixture: Fixture) -> dict[str, Any]:
    citations = _all_citations(fixture)
    report = fixture.report if fixture.report is not None else _facts_report(fixture)
    evidence = Evidence(
        tuple(citations),
        f"Report written from {len(citations)} source(s) read during the research.",
        _lowest_confidence(fixture),
    )
    return _text_wire(report, evidence.basis("output"))


def _facts_report(fixture: Fixture) -> str:
    lines = ["# Findings", ""]
    for fact in fixture.facts:
        label = fact.name.replace("_", " ").capitalize()
        sources = "".join(
            f" ([{c.get('title') or c['url']}]({c['url']}))" for c in fact.evidence.citations
        )
        lines.append(f"- **{label}:** {_as_string(fact.value)}{sources}")
    citations = _all_citations(fixture)
    if citations:
        lines += ["", "## Sources", ""]
        lines += [f"{i}. [{c.get('title') or c['url']}]({c['url']})"
                  for i, c in enumerate(citations, 1)]  # fmt: skip
    return "\n".join(lines) + "\n"


def _auto_output(fixture: Fixture) -> dict[str, Any]:
    if fixture.auto is not None:
        content = copy.deepcopy(dict(fixture.auto))
    else:
        content = {f.name: copy.deepcopy(f.value) for f in fixture.facts if f.value is not None}
    fallback = Evidence(
        tuple(_all_citations(fixture)), "Synthesised from the sources read.", "medium"
    )
    basis: list[dict[str, Any]] = []
    for key, value in content.items():
        fact = fixture.fact(key)
        _auto_basis(key, value, fact.evidence if fact else fallback, basis)
    return _json_wire(content, basis, infer_schema(content))


def _auto_basis(path: str, value: Any, evidence: Evidence, out: list[dict[str, Any]]) -> None:
    out.append(evidence.basis(path))
    if isinstance(value, Mapping):
        for key, item in value.items():
            _auto_basis(f"{path}.{key}", item, evidence, out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _auto_basis(f"{path}.{i}", item, evidence, out)


def infer_schema(value: Any) -> dict[str, Any]:
    """The JSON schema an auto run reports for its content: every object closed and fully
    required. Raises ValueError for content no such schema describes (e.g. a list of objects
    with different keys)."""
    if isinstance(value, Mapping):
        return {
            "type": "object",
            "properties": {k: infer_schema(v) for k, v in value.items()},
            "required": list(value),
            "additionalProperties": False,
        }
    if isinstance(value, list):
        return {"type": "array", "items": _infer_items(value)}
    if value is None:
        return {"type": ["string", "null"]}
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    raise ValueError(f"{type(value).__name__} values are not JSON")


def _infer_items(items: list[Any]) -> dict[str, Any]:
    if not items:
        return {"type": "string"}
    schemas = [infer_schema(v) for v in items]
    if all(s == schemas[0] for s in schemas):
        return schemas[0]
    if all(s["type"] == "object" for s in schemas):
        raise ValueError("the objects in a list must have the same keys and value types")
    if any(isinstance(s["type"], list) or s["type"] in ("object", "array") for s in schemas):
        raise ValueError("a list mixing objects or lists with other values has no simple schema")
    kinds = sorted({s["type"] for s in schemas})
    if set(kinds) == {"integer", "number"}:
        return {"type": "number"}
    return {"type": kinds}


# ---------------------------------------------------------------------------------------------
# Trace


def _trace(
    fixture: Fixture | None,
    input: str | Mapping[str, Any],
    fields: list[str],
    processor: Processor,
    rng: random.Random,
) -> Trace:
    words = _key_words(input)
    plan = list(fixture.plan) if fixture and fixture.plan else _generic_plan(input, fields)
    searches = (
        list(fixture.searches)
        if fixture and fixture.searches
        else _generic_searches(words, fields, rng)
    )
    results = (
        list(fixture.results)
        if fixture and fixture.results
        else _generic_results(searches, fixture is not None)
    )
    sources = [c["url"] for c in _all_citations(fixture)] if fixture else []
    scale = math.sqrt(max(1.0, processor.max_seconds / 60.0))
    read = len(sources) + rng.randint(2, 2 + int(8 * scale))
    considered = read + rng.randint(read, 3 * read)
    return Trace(plan, searches, results, sources, considered, read)


def _key_words(input: str | Mapping[str, Any]) -> list[str]:
    source = (
        input
        if isinstance(input, str)
        else " ".join(str(v) for v in _flatten(list(input.values())))
    )
    words: list[str] = []
    for found in re.findall(r"\w[\w.&'-]*", source):
        word = found.rstrip(".'-")
        if word.lower() not in _STOPWORDS and word.lower() not in (w.lower() for w in words):
            words.append(word)
    return words[:8]


def _generic_plan(input: str | Mapping[str, Any], fields: list[str]) -> list[str]:
    subject = _subject(input)
    if fields:
        wanted = ", ".join(f.replace("_", " ") for f in fields[:6])
        first = f"I'll look for {wanted} for: {subject}"
    else:
        first = f"I'll look for: {subject}"
    return [first, "I'll start with broad web searches, then read the most relevant pages."]


def _generic_searches(words: list[str], fields: list[str], rng: random.Random) -> list[str]:
    core = " ".join(words[:5]) or "query"
    suffixes = ["official site", "overview", "latest", "wikipedia", "news", "annual report"]
    topics = [f.replace("_", " ") for f in fields if f.lower() not in core.lower()]
    searches = [core, *(f"{core} {topic}" for topic in topics[:2])]
    searches.append(f"{core} {rng.choice(suffixes)}")
    return list(dict.fromkeys(searches))


def _generic_results(searches: list[str], matched: bool) -> list[str]:
    results = [f"Reviewed the results for '{q}'." for q in searches[:2]]
    results.append(
        "Cross-checked the findings across sources." if matched
        else "No reliable source answered this; returning placeholders."
    )  # fmt: skip
    return results
