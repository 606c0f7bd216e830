{{/*
Names, labels and images shared by both charts. Every template takes the parent chart's root
context (`.`), so .Chart and .Values are those of the chart that includes it.
*/}}

{{- define "periscope-common.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Release-scoped name. A release whose name already contains the chart name is not repeated
(release "periscope" of chart "periscope" → "periscope").
*/}}
{{- define "periscope-common.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "periscope-common.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "periscope-common.selectorLabels" -}}
app.kubernetes.io/name: {{ include "periscope-common.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "periscope-common.labels" -}}
helm.sh/chart: {{ include "periscope-common.chart" . }}
{{ include "periscope-common.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: periscope
{{- end -}}

{{- define "periscope-common.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "periscope-common.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create=false. Set serviceAccount.name to the existing ServiceAccount the pod should run as, or set serviceAccount.create=true." .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
"repository:tag" of an image block; the tag defaults to the chart's appVersion so images move with
the chart. Call with (dict "image" .Values.x.image "root" $).
*/}}
{{- define "periscope-common.image" -}}
{{- $tag := .image.tag | default .root.Chart.AppVersion | toString -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
