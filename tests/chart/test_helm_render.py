"""tools/helm_render behaves like `helm template` where the chart tests rely on it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

CHART_YAML = "apiVersion: v2\nname: demo\nversion: 1.2.3\nappVersion: \"4.5\"\n"
VALUES = """\
image: {repository: repo/app, tag: ""}
nested: {keep: 1, drop: 2, list: [a, b]}
message: "hello {{ .Release.Name }}"
"""
TEMPLATES = {
    "_helpers.tpl": '{{- define "demo.name" -}}{{ .Chart.Name }}-{{ .Release.Name }}{{- end }}',
    "config.yaml": """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "demo.name" . }}
data:
  image: {{ printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) | quote }}
  nested: {{ toJson .Values.nested | quote }}
  yaml: {{ toYaml .Values.nested | quote }}
  message: {{ tpl .Values.message . | quote }}
  template: {{ .Template.Name | quote }}
  kube: {{ .Capabilities.KubeVersion.Version | quote }}
  has: {{ .Capabilities.APIVersions.Has "batch/v1" | quote }}
  lookup: {{ lookup "v1" "Secret" "ns" "x" | len | quote }}
  namespace: {{ .Release.Namespace | quote }}
  service: {{ .Release.Service | quote }}
  missing: "{{ .Values.nothing }}"
""",
    "empty.yaml": "{{- if false }}\nkind: Never\n{{- end }}\n",
    "NOTES.txt": "Installed {{ .Chart.Name }} {{ .Chart.Version }}.",
}


def _chart(root: Path, templates: dict[str, str]) -> Path:
    (root / "templates").mkdir(parents=True)
    (root / "Chart.yaml").write_text(CHART_YAML)
    (root / "values.yaml").write_text(VALUES)
    for name, text in templates.items():
        (root / "templates" / name).write_text(text)
    return root


def _run(helm_render: Path, chart: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm_render), "-name", "rel", "-namespace", "ns", *args, str(chart)],
                          capture_output=True, text=True, timeout=60)


def test_renders_like_helm_template(helm_render: Path, tmp_path: Path) -> None:
    chart = _chart(tmp_path / "demo", TEMPLATES)
    user = tmp_path / "user.yaml"
    user.write_text("image: {tag: '1.10'}\nnested: {drop: null, list: [c]}\n")
    result = _run(helm_render, chart, "-f", str(user), "-notes", str(tmp_path / "notes.txt"))
    assert result.returncode == 0, result.stderr
    assert "# Source: demo/templates/config.yaml" in result.stdout
    assert "empty.yaml" not in result.stdout and "_helpers" not in result.stdout
    (config,) = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert config["metadata"]["name"] == "demo-rel"
    assert config["data"] == {
        "image": "repo/app:1.10",
        "nested": '{"keep":1,"list":["c"]}',
        "yaml": "keep: 1\nlist:\n- c",
        "message": "hello rel",
        "template": "demo/templates/config.yaml",
        "kube": "v1.37.0",
        "has": "true",
        "lookup": "0",
        "namespace": "ns",
        "service": "Helm",
        "missing": "",
    }
    assert (tmp_path / "notes.txt").read_text() == "Installed demo 1.2.3."


def test_fails_clearly_on_template_errors(helm_render: Path, tmp_path: Path) -> None:
    required = _chart(tmp_path / "required", {"a.yaml": '{{ required "image.tag is required" .Values.image.tag }}'})
    result = _run(helm_render, required)
    assert result.returncode != 0
    assert "execution error at (demo/templates/a.yaml:1:3): image.tag is required" in result.stderr
    broken = _chart(tmp_path / "broken", {"a.yaml": "{{ if }}"})
    result = _run(helm_render, broken)
    assert result.returncode != 0 and "parsing demo/templates/a.yaml" in result.stderr
    failing_notes = _chart(tmp_path / "notes", {"NOTES.txt": '{{ fail "no notes" }}'})
    result = _run(helm_render, failing_notes)
    assert result.returncode != 0 and "no notes" in result.stderr
