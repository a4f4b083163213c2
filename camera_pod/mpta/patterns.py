"""Checks of the regular expressions a pipeline.json may carry (an OCR node's normalising ``pattern``).

Archives are untrusted, and Python's ``re`` backtracks: ``a*a*a*…b`` takes minutes on 16 characters. So a
pattern is bounded three ways: its own length (``MAX_PATTERN_CHARS``), the text it is ever matched against
(``MAX_TEXT_CHARS``, the longest read an OCR node accepts), and a static bound on the ways it can backtrack over
a text that long, computed from its parse tree (``backtracking_bound``): a repeat counts every repetition it could
take, nested and adjacent repeats multiply, alternatives add. Plate formats (``^[A-Z]{2}-?[0-9]{3}-?[A-Z]{2}$``)
stay in the single digits; a nested or many-fold unbounded repeat is refused.
"""

from __future__ import annotations

import re
import re._parser as sre_parser  # the stdlib's own parser (Python 3.11+): the tree the engine will run
from typing import Any

MAX_PATTERN_CHARS = 256
MAX_REPLACEMENT_CHARS = 128
MAX_TEXT_CHARS = 16
MAX_BACKTRACKING = 100_000
_CAP = MAX_BACKTRACKING * 1000  # keeps the arithmetic small once a pattern is known to be too costly

_REPEATS = frozenset({"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"})


def _sequence_cost(items: Any) -> int:
    cost = 1
    for op, argument in items:
        cost = min(_CAP, cost * _item_cost(str(op), argument))
    return cost


def _item_cost(op: str, argument: Any) -> int:
    if op in _REPEATS:
        low, high, body = argument
        inner = _sequence_cost(body)
        most = min(int(high), MAX_TEXT_CHARS)
        return min(_CAP, sum(min(_CAP, inner ** count) for count in range(min(int(low), most), most + 1)))
    if op == "SUBPATTERN":
        return _sequence_cost(argument[-1])
    if op == "BRANCH":
        return min(_CAP, sum(_sequence_cost(alternative) for alternative in argument[1]))
    if op in {"ASSERT", "ASSERT_NOT"}:
        return _sequence_cost(argument[1])
    if op == "ATOMIC_GROUP":
        return _sequence_cost(argument)
    if op == "GROUPREF_EXISTS":
        _group, yes, no = argument
        return min(_CAP, _sequence_cost(yes) + (_sequence_cost(no) if no is not None else 1))
    return 1


def backtracking_bound(pattern: str) -> int:
    """An upper bound on the paths ``re`` may try matching ``pattern`` against ``MAX_TEXT_CHARS`` characters."""
    return _sequence_cost(sre_parser.parse(pattern))


def pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` may not be used (does not compile, too long, may backtrack for too long); None when fine."""
    if len(pattern) > MAX_PATTERN_CHARS:
        return f"longer than {MAX_PATTERN_CHARS} characters"
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        return f"not a regular expression: {exc}"
    bound = backtracking_bound(pattern)
    if bound > MAX_BACKTRACKING:
        return (f"may backtrack too much (bound {bound if bound < _CAP else f'> {_CAP}'} on {MAX_TEXT_CHARS} "
                f"characters, at most {MAX_BACKTRACKING}): avoid nested or many unbounded repeats such as (a+)+ "
                f"or .*.*.*")
    return None


def replacement_problem(replacement: str, pattern: str) -> str | None:
    """Why ``replacement`` cannot expand a match of ``pattern`` (a group it does not have, a bad escape)."""
    if len(replacement) > MAX_REPLACEMENT_CHARS:
        return f"longer than {MAX_REPLACEMENT_CHARS} characters"
    try:
        sre_parser.parse_template(replacement, re.compile(pattern))
    except (re.error, IndexError) as exc:
        return f"not a replacement for this pattern: {exc}"
    return None
