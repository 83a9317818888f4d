{{/*
Helpers shared by every template: names, the standard labels, the image, and the
leader-election decision.
*/}}

{{/* The chart's name, or nameOverride. */}}
{{- define "talos-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The name of every object: fullnameOverride, or the release name when it already
contains the chart's name (`helm install talos-operator ...` gives "talos-operator"),
or "<release>-<name>". 63 characters at most (a DNS label).
*/}}
{{- define "talos-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "talos-operator.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<chart>-<version>", for the helm.sh/chart label. */}}
{{- define "talos-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The labels that select the operator's pods: they never change after install. */}}
{{- define "talos-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "talos-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The standard labels of every object (Kubernetes' recommended labels). */}}
{{- define "talos-operator.labels" -}}
helm.sh/chart: {{ include "talos-operator.chart" . }}
{{ include "talos-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: node-os
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The image reference: the tag defaults to the chart's appVersion. */}}
{{- define "talos-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
"true" when the operator runs with --leader-election, else "false".
leaderElection: auto means on when replicas > 1. values.schema.json allows only
auto, true and false; toString makes true and "true" (from --set-string) alike.
*/}}
{{- define "talos-operator.leaderElection" -}}
{{- $mode := toString .Values.leaderElection -}}
{{- if eq $mode "auto" -}}
{{- gt (int .Values.replicas) 1 -}}
{{- else if or (eq $mode "true") (eq $mode "false") -}}
{{- $mode -}}
{{- else -}}
{{- fail (printf "leaderElection must be auto, true or false, not %q" $mode) -}}
{{- end -}}
{{- end -}}
