"""Cell text -> TaskRequest: the ``%%parallel`` body grammar, ``{{name}}`` placeholders and
output specs. Pure: no IPython, no network, no pandas. The grammar is in docs/cell-grammar.md.
"""

from .build import build_request, request_warnings, validate_request
from .grammar import SpecError, input_from_value
from .schema import output_to_task_spec

__all__ = [
    "SpecError",
    "build_request",
    "input_from_value",
    "output_to_task_spec",
    "request_warnings",
    "validate_request",
]
