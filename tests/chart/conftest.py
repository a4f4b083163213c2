"""Render the Helm chart with tools/helm_render (Go text/template + sprig: Helm's engine, no Helm binary)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "detector"
TOOL = ROOT / "tools" / "helm_render"
GOPATH = Path("/usr/share/gocode")
GO_PACKAGES = "golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v2-dev"
RELEASE = "cams"
NAMESPACE = "detectors"


@dataclass(frozen=True)
class Rendered:
    documents: list[dict[str, Any]]
    notes: str

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.documents if doc["kind"] == kind]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        (found,) = [doc for doc in self.of_kind(kind) if doc["metadata"]["name"] == name]
        return found


class RenderError(Exception):
    """helm_render exited non-zero; the message is its stderr."""


Render = Callable[..., Rendered]


@pytest.fixture(scope="session")
def helm_render(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build tools/helm_render once per session (a few seconds; Debian's Go packages, offline)."""
    go = shutil.which("go")
    if go is None or not (GOPATH / "src/github.com/Masterminds/sprig").is_dir():
        pytest.fail(f"the chart tests need Go and sprig: apt-get install {GO_PACKAGES} "
                    "(scripts/system-packages.sh installs them)")
    build_dir = tmp_path_factory.mktemp("helm_render")
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": str(GOPATH), "GOFLAGS": ""}
    if "HOME" not in env and "XDG_CACHE_HOME" not in env:
        env["GOCACHE"] = str(build_dir / "gocache")
    binary = build_dir / "helm_render"
    result = subprocess.run([go, "build", "-o", str(binary), "."], cwd=TOOL, env=env,
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        pytest.fail(f"go build of tools/helm_render failed (packages: {GO_PACKAGES}):\n{result.stderr}")
    return binary


@pytest.fixture
def render(helm_render: Path, tmp_path: Path) -> Render:
    """Render the chart over values (a dict or a values file); a RenderError carries helm_render's stderr."""
    counter = iter(range(1000))

    def run(values: dict[str, Any] | Path | None = None, *, include_crds: bool = False) -> Rendered:
        notes = tmp_path / f"notes-{next(counter)}.txt"
        command = [str(helm_render), "-name", RELEASE, "-namespace", NAMESPACE, "-notes", str(notes)]
        if include_crds:
            command.append("-include-crds")
        if isinstance(values, dict):
            values_file = tmp_path / f"values-{next(counter)}.yaml"
            values_file.write_text(yaml.safe_dump(values))
            values = values_file
        if values is not None:
            command += ["-f", str(values)]
        result = subprocess.run([*command, str(CHART)], capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RenderError(result.stderr)
        documents = [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]
        return Rendered(documents, notes.read_text())

    return run
