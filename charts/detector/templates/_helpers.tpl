{{/* Chart name, overridable. */}}
{{- define "detector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every resource name. Cut to 52 characters so that "<fullname>-operator" still fits a
63-character DNS label (Service names, label values).
*/}}
{{- define "detector.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "detector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of a component's objects; call with (dict "root" $ "component" "operator"). */}}
{{- define "detector.labels" -}}
{{ include "detector.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ include "detector.chart" .root }}
{{- end }}

{{/* The stable subset of the labels, for Deployment selectors and Services. */}}
{{- define "detector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "detector.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* "repository:tag", the tag defaulting to appVersion; call with (dict "root" $ "image" .Values.x.image "key" "x.image"). */}}
{{- define "detector.image" -}}
{{- $repository := required (printf "%s.repository is required" .key) .image.repository }}
{{- printf "%s:%s" $repository (.image.tag | default .root.Chart.AppVersion | toString) }}
{{- end }}

{{- define "detector.cameraImage" -}}
{{- include "detector.image" (dict "root" . "image" .Values.camera.image "key" "camera.image") }}
{{- end }}

{{- define "detector.operatorImage" -}}
{{- include "detector.image" (dict "root" . "image" .Values.operator.image "key" "operator.image") }}
{{- end }}

{{- define "detector.operatorServiceAccount" -}}
{{- include "detector.fullname" . }}-operator
{{- end }}

{{- define "detector.brokerServiceAccount" -}}
{{- include "detector.fullname" . }}-broker
{{- end }}

{{/* The Secret (key "token") with the broker's shared token: auth.existingSecret, or the chart's own. */}}
{{- define "detector.authSecretName" -}}
{{- .Values.auth.existingSecret | default (printf "%s-auth" (include "detector.fullname" .)) }}
{{- end }}

{{/* Where the backend (and the camera pods) reach the broker. */}}
{{- define "detector.brokerUrl" -}}
{{- printf "ws://%s-broker.%s.svc:%d" (include "detector.fullname" .) .Release.Namespace (int .Values.broker.service.port) }}
{{- end }}

{{/* The non-root, read-only security context shared by the operator and broker pods. */}}
{{- define "detector.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "detector.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}
