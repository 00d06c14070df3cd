{{/* Object names: the release name, suffixed with the chart's unless it contains it (63 characters at most). */}}
{{- define "training-controller.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "training-controller.fullname" -}}
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

{{/*
The name plus a suffix, still a DNS label of at most 63 characters (a Job's name is its pods' job-name label).
A name too long for it keeps a hash of the whole: two long release names that share their first 50 characters
got one ConfigMap name (found by review), and the cut could end in "-", giving "…--job-template".
*/}}
{{- define "training-controller.suffixed" -}}
{{- $full := include "training-controller.fullname" .root }}
{{- $room := int (sub 62 (len .suffix)) }}
{{- if gt (len $full) $room }}
{{- $full = printf "%s-%s" ($full | trunc (int (sub $room 9)) | trimSuffix "-") ($full | sha256sum | trunc 8) }}
{{- end }}
{{- printf "%s-%s" $full .suffix }}
{{- end }}

{{- define "training-controller.selectorLabels" -}}
app.kubernetes.io/name: {{ include "training-controller.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "training-controller.labels" -}}
{{ include "training-controller.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "training-controller.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Job template the controller mounts: jobTemplate.content, else the chart's copy of deploy/'s. */}}
{{- define "training-controller.jobTemplate" -}}
{{- if .Values.jobTemplate.content }}
{{- .Values.jobTemplate.content }}
{{- else }}
{{- .Files.Get "files/job-template.yaml" }}
{{- end }}
{{- end }}

{{/* The ServiceMonitor's and PodMonitor's relabeling: the job label the alert rules and dashboard expect. */}}
{{- define "training-controller.jobRelabeling" -}}
relabelings:
  - action: replace
    targetLabel: job
    replacement: {{ .Values.metricsJob | quote }}
{{- end }}

{{/* Where the training Jobs go (TRAINING_NAMESPACE, else the controller's own): the Role must be there. */}}
{{- define "training-controller.jobNamespace" -}}
{{- default .Release.Namespace .Values.config.TRAINING_NAMESPACE }}
{{- end }}
