{{/* Chart name. */}}
{{- define "nassync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Resource name prefix: the release name when it contains the chart name
("nassync" -> nassync), else <release>-<chart>.
*/}}
{{- define "nassync.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Operator objects: Deployment, ServiceAccount, (Cluster)Role(Binding): nassync-operator for release "nassync". */}}
{{- define "nassync.operatorName" -}}
{{- printf "%s-operator" (include "nassync.fullname" .) }}
{{- end }}

{{- define "nassync.serviceAccountName" -}}
{{- default (include "nassync.operatorName" .) .Values.serviceAccount.name }}
{{- end }}

{{- define "nassync.webhookServiceName" -}}
{{- printf "%s-webhook" (include "nassync.fullname" .) }}
{{- end }}

{{- define "nassync.webhookSecretName" -}}
{{- printf "%s-webhook-tls" (include "nassync.fullname" .) }}
{{- end }}

{{- define "nassync.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "nassync.labels" -}}
helm.sh/chart: {{ include "nassync.chart" . }}
{{ include "nassync.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: nassync
{{- end }}

{{- define "nassync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nassync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* repository[:tag][@digest] */}}
{{- define "nassync.imageRef" -}}
{{- $repo := .repository -}}
{{- if .digest -}}
{{- printf "%s@%s" $repo .digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (toString .tag) -}}
{{- end -}}
{{- end }}

{{- define "nassync.image" -}}
{{- include "nassync.imageRef" (dict "repository" .Values.image.repository "tag" (default .Chart.AppVersion .Values.image.tag) "digest" .Values.image.digest) }}
{{- end }}

{{- define "nassync.moverImage" -}}
{{- $m := .Values.moverImage -}}
{{- if or $m.repository $m.tag $m.digest -}}
{{- include "nassync.imageRef" (dict "repository" (default .Values.image.repository $m.repository) "tag" (default (default .Chart.AppVersion .Values.image.tag) $m.tag) "digest" $m.digest) }}
{{- else -}}
{{- include "nassync.image" . }}
{{- end -}}
{{- end }}

{{/*
RBAC rules of the operator inside the namespaces it watches. Every verb is
used by operator/nassync/controller/kube.py or by kopf's watches; see
docs/install.md "What the RBAC grants". tests/ship pins this set.
*/}}
{{- define "nassync.namespacedRules" -}}
# kopf watches SyncJobs and SyncTargets; the reconciler and the webhook list
# SyncJobs per namespace and read one SyncTarget by name. delete: only a
# target's opt-in spec.history removes finished SyncJobs (never any data).
- apiGroups: ["nassync.dev"]
  resources: ["syncjobs"]
  verbs: ["list", "watch", "delete"]
- apiGroups: ["nassync.dev"]
  resources: ["synctargets"]
  verbs: ["get", "list", "watch"]
# The reconciler writes a SyncJob's status with PUT (resourceVersion-checked).
- apiGroups: ["nassync.dev"]
  resources: ["syncjobs/status"]
  verbs: ["update"]
# The reconciler merge-patches a SyncTarget's status (Ready, activeMovers, queued).
- apiGroups: ["nassync.dev"]
  resources: ["synctargets/status"]
  verbs: ["patch"]
# Mover Jobs: watched (kopf, label-filtered), listed and created; deleted only
# when their pod never started within spec.mover.startTimeout (frees the slot).
# Otherwise the garbage collector removes them with their SyncJob.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["list", "watch", "create", "delete"]
# Mover pods: listed for their state; their log tail gives push progress.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
# A SyncTarget's Secret: read to check it exists and has the keys the
# transport needs (Ready condition, webhook). Values are never logged or copied.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# Events on SyncJobs/SyncTargets (the reconciler and kopf post core/v1 Events);
# listed only for a mover Job whose pod has not started (FailedCreate,
# FailedScheduling, FailedMount say why).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "list"]
{{- end }}
