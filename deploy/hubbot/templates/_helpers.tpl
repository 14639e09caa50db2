{{/* Names, labels and the few derived values every template shares. */}}

{{- define "hubbot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-hubbot, or just <release> when it already contains the chart name. */}}
{{- define "hubbot.fullname" -}}
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

{{- define "hubbot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hubbot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hubbot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "hubbot.labels" -}}
helm.sh/chart: {{ include "hubbot.chart" . }}
{{ include "hubbot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: github-app
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The port `hubbot serve` listens on (HUBBOT_PORT); probes and policies use it. */}}
{{- define "hubbot.containerPort" -}}
8080
{{- end }}

{{- define "hubbot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hubbot.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the private key and webhook secret: the operator's or the chart's. */}}
{{- define "hubbot.secretName" -}}
{{- default (include "hubbot.fullname" .) .Values.github.existingSecret }}
{{- end }}

{{- define "hubbot.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Several replicas: they elect a leader with a Lease, and standbys forward to it. */}}
{{- define "hubbot.replicated" -}}
{{- if gt (int .Values.replicas) 1 }}true{{ end }}
{{- end }}

{{/* Whether the bot talks to the Kubernetes API: its executor, or the leader election. */}}
{{- define "hubbot.usesKubeApi" -}}
{{- if or .Values.executor.kubernetes.enabled (include "hubbot.replicated" .) }}true{{ end }}
{{- end }}

{{/* Whether the bot gets a Role: it talks to the API and RBAC is managed here. */}}
{{- define "hubbot.rbacEnabled" -}}
{{- if and (include "hubbot.usesKubeApi" .) .Values.rbac.create }}true{{ end }}
{{- end }}

{{/* HUBBOT_PUBLIC_URL: publicUrl, or the Ingress host when it routes the deploy logs. */}}
{{- define "hubbot.publicUrl" -}}
{{- if .Values.publicUrl }}
{{- .Values.publicUrl | trimSuffix "/" }}
{{- else if and .Values.ingress.enabled .Values.ingress.deployLogs }}
{{- printf "http%s://%s" (ternary "s" "" (not (empty .Values.ingress.tls))) .Values.ingress.host }}
{{- end }}
{{- end }}

{{/* Fail early, with one line, on values that would give a bot that cannot start. */}}
{{- define "hubbot.validate" -}}
{{- if not (toString .Values.github.appId) }}
{{- fail "github.appId is required: the GitHub App's id (hubbot register prints it)" }}
{{- end }}
{{- if not .Values.github.existingSecret }}
{{- if not .Values.github.privateKey }}
{{- fail "github.privateKey is required (--set-file github.privateKey=app.pem), or set github.existingSecret" }}
{{- end }}
{{- if not (trim .Values.github.webhookSecret) }}
{{- fail "github.webhookSecret is required, or set github.existingSecret" }}
{{- end }}
{{- end }}
{{- with .Values.github.existingSecretKeys }}
{{- if eq .privateKey .webhookSecret }}
{{- fail "github.existingSecretKeys.privateKey and .webhookSecret must name different keys" }}
{{- end }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.host) }}
{{- fail "ingress.host is required when ingress.enabled: the host GitHub posts webhooks to" }}
{{- end }}
{{- end }}
