"""``{{name}}`` placeholders: what is substituted, what is refused, and nothing is executed."""

from __future__ import annotations

from typing import Any

import pytest

from parallel_nb.spec.grammar import Section, SpecError
from parallel_nb.spec.interpolate import interpolate


def render(text: str, namespace: dict[str, Any]) -> Any:
    return interpolate(text, namespace, Section(text, 2))


def error(text: str, namespace: dict[str, Any]) -> SpecError:
    with pytest.raises(SpecError) as caught:
        render(text, namespace)
    return caught.value


class Company:
    name = "Acme"

    @property
    def broken(self) -> str:
        raise RuntimeError("no network")


def test_calls_are_refused_and_never_made() -> None:
    calls: list[str] = []

    def boom() -> str:
        calls.append("called")
        return "x"

    assert "is not a placeholder" in str(error("{{boom()}}", {"boom": boom}))
    assert "is a function or method" in str(error("{{boom}}", {"boom": boom}))
    assert "is not a placeholder" in str(error("{{ 1 + 1 }}", {}))
    assert "is not a placeholder" in str(error("{{}}", {}))
    assert calls == []


def test_unknown_names_are_reported_before_any_value_is_read() -> None:
    err = error("{{company.missing}}\n{{nope}}", {"company": Company()})
    assert (err.line, err.message.split(" — ")[0]) == (3, "unknown name 'nope'")


def test_suggestions_skip_private_names_unless_the_name_is_private() -> None:
    namespace = {"_i3": 1, "_company": 2, "company": 3}
    assert "(did you mean 'company'?)" in str(error("{{compan}}", namespace))
    assert "(did you mean '_company'?)" in str(error("{{_compan}}", namespace))
    assert "did you mean" not in str(error("{{i3}}", namespace))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{{c.nme}}", "Company has no attribute 'nme' (did you mean 'name'?)"),
        ("{{c.broken}}", "reading 'broken' raised RuntimeError: no network"),
        ('{{d["kk"]}}', "no key 'kk' in the dict (did you mean 'k'?)"),
        ("{{d.kk}}", "no key 'kk' in the dict"),
        ("{{xs[3]}}", "index 3 is out of range for a list of length 2"),
        ("{{n[0]}}", "a value of type int cannot be indexed with 0"),
    ],
)
def test_bad_steps_say_what_was_wrong(text: str, fragment: str) -> None:
    namespace = {"c": Company(), "d": {"k": 1}, "xs": [1, 2], "n": 5}
    err = error(f"Q\n{text}", namespace)
    assert err.line == 3 and fragment in err.message


def test_attribute_steps_read_mapping_keys() -> None:
    assert render("{{d.k}} {{c.name}}", {"d": {"k": "v"}, "c": Company()}) == "v Acme"


def test_whole_json_strings_take_the_value_itself() -> None:
    namespace = {"n": 3, "none": None, "xs": (1, 2), "c": Company(), "nan": float("nan")}
    value = {
        "n": "{{n}}",
        "none": "{{ none }}",
        "xs": ["{{xs}}", "{{xs[0]}}"],
        "c": "{{c}}",
        "nan": "{{nan}}",
        "mixed": " {{n}}",
        "two": "{{n}}{{n}}",
    }
    rendered = interpolate(value, namespace, Section("", 2))
    assert isinstance(rendered, dict)
    assert rendered["c"].startswith("<") and rendered["c"].endswith(">")
    assert {**rendered, "c": None} == {
        "n": 3,
        "none": None,
        "xs": [[1, 2], 1],
        "c": None,
        "nan": "nan",
        "mixed": " 3",
        "two": "33",
    }


def test_lines_are_found_inside_json_text() -> None:
    source = '{\n  "a": 1,\n  "b": "{{d[\\"missing\\"]}}"\n}'
    with pytest.raises(SpecError) as caught:
        interpolate({"a": 1, "b": '{{d["missing"]}}'}, {"d": {}}, Section(source, 2))
    assert caught.value.line == 4


def test_without_a_cell_errors_have_no_line() -> None:
    with pytest.raises(SpecError) as caught:
        interpolate("{{x}}", {}, Section("{{x}}"))
    assert caught.value.line is None
