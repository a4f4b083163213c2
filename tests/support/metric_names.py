"""Metric names: those a scrape exposes, those README.md ("Watching it run") lists, those the chart's alert rules and
Grafana dashboard query (so a test can tell that every one of them is really exported)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "README.md"  # its section "Watching it run"
BROKER_SECTION = "The broker's /metrics"
POD_SECTION = "A camera pod's /metrics"
# A metric name in PromQL: ours all start with detector_ (label names and functions never do).
_NAME = re.compile(r"\b(detector_[a-z0-9_]+)\b")
_HISTOGRAM_SERIES = ("_bucket", "_count", "_sum")


def exposed(page: str) -> set[str]:
    """The names a query uses for a scrape's families: a counter's with ``_total``, a histogram's bare (the
    ``_created`` series prometheus_client adds to counters and histograms left out)."""
    names = set()
    for family in text_string_to_metric_families(page):
        if not family.name.endswith("_created"):
            names.add(f"{family.name}_total" if family.type == "counter" else family.name)
    return names


def sampled(page: str) -> set[str]:
    """Every series name with at least one sample (``_bucket``/``_count``/``_sum`` of a histogram included)."""
    return {sample.name for family in text_string_to_metric_families(page) for sample in family.samples}


def documented(section: str = BROKER_SECTION) -> set[str]:
    """The metric names in the tables of one section of README.md ("Watching it run") (first cell, in backticks)."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"### {section}")
    end = text.find("\n#", start + 4)
    rows = [line for line in text[start:end if end != -1 else None].splitlines() if line.startswith("| `")]
    return {re.match(r"\| `([a-z0-9_]+)", row).group(1) for row in rows}  # type: ignore[union-attr]


def queried(expressions: Iterable[str]) -> set[str]:
    """Our metric names in PromQL expressions, as a scrape names them (``_bucket`` etc. stripped)."""
    names = set()
    for expression in expressions:
        for name in _NAME.findall(expression):
            names.add(next((name.removesuffix(suffix) for suffix in _HISTOGRAM_SERIES if name.endswith(suffix)),
                           name))
    return names


def rule_expressions(rule_groups: dict[str, Any]) -> list[str]:
    return [rule["expr"] for group in rule_groups["groups"] for rule in group["rules"]]


def dashboard_expressions(dashboard: dict[str, Any]) -> list[str]:
    """Every panel target's ``expr`` (rows' nested panels too) and every templating variable's query."""
    panels = [*dashboard["panels"], *(child for row in dashboard["panels"] for child in row.get("panels", []))]
    found = [target["expr"] for panel in panels for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        found.append(query.get("query", "") if isinstance(query, dict) else str(query or ""))
    return found


def load_json(text: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(text)
    return document
