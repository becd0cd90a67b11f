{{/*
The service's enrolment bounds and failed-authentication limits (docs/security.md), as its environment.
enrolment.knownNodesOnly needs Kubernetes discovery: without it no node would ever be known, and every
enrolment would be refused.
*/}}
{{- define "suanli.securityEnv" -}}
{{- $e := .Values.enrolment -}}
{{- $f := .Values.authFailures -}}
{{- if and $e.knownNodesOnly (not .Values.discovery.kubernetes.enabled) -}}
{{- fail "enrolment.knownNodesOnly needs discovery.kubernetes.enabled: only nodes discovery recorded may enrol" -}}
{{- end -}}
{{- if gt (int64 $e.tokenTtlSeconds) (int64 $e.maxTokenTtlSeconds) -}}
{{- fail "enrolment.tokenTtlSeconds must not exceed enrolment.maxTokenTtlSeconds" -}}
{{- end -}}
- name: SUANLI_ENROL_TOKEN_TTL_SECONDS
  value: {{ int64 $e.tokenTtlSeconds | toString | quote }}
- name: SUANLI_ENROL_TOKEN_MAX_TTL_SECONDS
  value: {{ int64 $e.maxTokenTtlSeconds | toString | quote }}
- name: SUANLI_ENROL_KNOWN_NODES_ONLY
  value: {{ $e.knownNodesOnly | toString | quote }}
- name: SUANLI_AUTH_FAILURE_BURST
  value: {{ int64 $f.burst | toString | quote }}
- name: SUANLI_AUTH_FAILURE_WINDOW_SECONDS
  value: {{ $f.windowSeconds | toString | quote }}
- name: SUANLI_TRUSTED_PROXIES
  value: {{ toJson $f.trustedProxies | quote }}
{{- end -}}
