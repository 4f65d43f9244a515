{{/* The chart name, as used in labels. */}}
{{- define "nicip.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The base name of every object: the release name, with the chart name appended unless it is in it already. */}}
{{- define "nicip.fullname" -}}
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

{{- define "nicip.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nicip.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "nicip.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "nicip.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: nicip
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "nicip.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nicip.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Where the credentials Secrets are: the only namespace whose Secrets the controller may read. */}}
{{- define "nicip.secretsNamespace" -}}
{{- default .Release.Namespace .Values.controller.secretsNamespace }}
{{- end }}

{{/* "true" when the controller takes a Lease: asked for, or needed because several replicas run. */}}
{{- define "nicip.leaderElect" -}}
{{- if or .Values.controller.leaderElection.enabled (gt (int .Values.replicas) 1) }}true{{ end }}
{{- end }}

{{- define "nicip.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}
