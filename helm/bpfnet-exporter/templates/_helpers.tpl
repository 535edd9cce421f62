{{- /* SPDX-License-Identifier: Apache-2.0 */ -}}
{{- /* Names and labels every template uses. */ -}}

{{- define "bpfnet-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- /* The release's full name: at most 63 characters, as names and label values must be. */ -}}
{{- define "bpfnet-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "bpfnet-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- /* What the DaemonSet, the Service and the monitors select pods by. */ -}}
{{- define "bpfnet-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bpfnet-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "bpfnet-exporter.labels" -}}
helm.sh/chart: {{ include "bpfnet-exporter.chart" . }}
{{ include "bpfnet-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "bpfnet-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "bpfnet-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}
