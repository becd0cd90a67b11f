{{/* Names, labels and shared fragments. */}}

{{- define "suanli.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "suanli.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "suanli.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels; call with (dict "ctx" $ "component" "api"). */}}
{{- define "suanli.selectorLabels" -}}
app.kubernetes.io/name: {{ include "suanli.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "suanli.labels" -}}
helm.sh/chart: {{ include "suanli.chart" .ctx }}
{{ include "suanli.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: suanli
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "suanli.apiImage" -}}
{{- printf "%s:%s" .Values.api.image.repository (default .Chart.AppVersion .Values.api.image.tag) -}}
{{- end -}}

{{- define "suanli.agentImage" -}}
{{- printf "%s:%s" .Values.agent.image.repository (default .Chart.AppVersion .Values.agent.image.tag) -}}
{{- end -}}

{{- define "suanli.apiServiceName" -}}
{{- printf "%s-api" (include "suanli.fullname" .) -}}
{{- end -}}

{{/* The Secret holding the first admin token: the one named, or the chart's own (admin-token-secret.yaml). */}}
{{- define "suanli.adminTokenSecret" -}}
{{- default (printf "%s-admin-token" (include "suanli.fullname" .)) .Values.adminToken.existingSecret -}}
{{- end -}}

{{- define "suanli.agentTokenSecret" -}}
{{- default (printf "%s-agent-tokens" (include "suanli.fullname" .)) .Values.agent.token.existingSecret -}}
{{- end -}}

{{/* The scheduler is on when asked for, or when the chart runs KubeRay clusters. */}}
{{- define "suanli.schedulerEnabled" -}}
{{- if or .Values.scheduler.enabled .Values.ray.enabled -}}true{{- end -}}
{{- end -}}

{{/* Any node label mapped for the agent: renders the init container and its RBAC. */}}
{{- define "suanli.agentNodeLabels" -}}
{{- range $label, $key := .Values.agent.nodeLabels -}}{{- if $key -}}true{{- end -}}{{- end -}}
{{- end -}}

{{- define "suanli.rayClusterName" -}}
{{- printf "%s-ray-%s" (include "suanli.fullname" .ctx) .tier -}}
{{- end -}}
