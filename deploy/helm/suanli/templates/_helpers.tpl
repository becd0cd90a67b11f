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

{{/* The Secret holding each tier cluster's Ray token (one key per tier). */}}
{{- define "suanli.rayAuthSecret" -}}
{{- default (printf "%s-ray-auth" (include "suanli.fullname" .)) .Values.ray.auth.existingSecret -}}
{{- end -}}

{{/* The environment that turns Ray's token authentication on, with the tier's token; (dict "ctx" $ "tier" t). */}}
{{- define "suanli.rayAuthEnv" -}}
- {name: RAY_AUTH_MODE, value: token}
- name: RAY_AUTH_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "suanli.rayAuthSecret" .ctx }}
      key: {{ .tier }}
{{- end -}}

{{/* The API pod reads Ray tokens: the chart's tier clusters, or scheduler.rayTokenSecret for an outside cluster. */}}
{{- define "suanli.rayTokens" -}}
{{- if and (include "suanli.schedulerEnabled" .) (or .Values.ray.enabled .Values.scheduler.rayTokenSecret.name) -}}true{{- end -}}
{{- end -}}

{{/* The API pod's volume of Ray tokens, mounted at /etc/suanli/ray: <tier>.token per tier cluster, ray.token for
scheduler.rayAddress; projected, owner/group-readable only (the scheduler refuses a token file others may read). */}}
{{- define "suanli.rayTokensVolume" -}}
- name: ray-tokens
  projected:
    defaultMode: 0440
    sources:
      {{- if .Values.ray.enabled }}
      - secret:
          name: {{ include "suanli.rayAuthSecret" . }}
          items:
            {{- range $tier := list "general" "ai" "hpc" "edge" }}
            {{- if (index $.Values.ray.tiers $tier).enabled }}
            - {key: {{ $tier }}, path: {{ $tier }}.token}
            {{- end }}
            {{- end }}
      {{- end }}
      {{- with .Values.scheduler.rayTokenSecret.name }}
      - secret:
          name: {{ . }}
          items:
            - {key: {{ $.Values.scheduler.rayTokenSecret.key }}, path: ray.token}
      {{- end }}
{{- end -}}
