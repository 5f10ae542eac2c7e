{{/* Name of the release's objects, at most 63 characters. */}}
{{- define "fastapi1.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "fastapi1.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: pass (dict "root" $ "component" "api"). */}}
{{- define "fastapi1.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "fastapi1.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The credentials, from the Secret named in values (DATABASE_URL, ADMIN_CLIENT_SECRET and
     SECRET_KEY required: production refuses to start without them; the rest optional). */}}
{{- define "fastapi1.secretEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.name }}
      key: {{ .Values.secrets.databaseUrlKey }}
- name: ADMIN_CLIENT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.name }}
      key: {{ .Values.secrets.adminClientSecretKey }}
- name: SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.name }}
      key: {{ .Values.secrets.secretKeyKey }}
{{- range $name, $key := .Values.secrets.optionalKeys }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.secrets.name }}
      key: {{ $key }}
      optional: true
{{- end }}
{{- end -}}

{{/* Writable scratch space under a read-only root filesystem, and where prometheus_client's
     multiprocess mode keeps its files. */}}
{{- define "fastapi1.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: metrics
  mountPath: /run/fastapi1/metrics
{{- end -}}

{{- define "fastapi1.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
- name: metrics
  emptyDir:
    medium: Memory
    sizeLimit: 64Mi
{{- end -}}

{{- define "fastapi1.podEnv" -}}
- name: PROMETHEUS_MULTIPROC_DIR
  value: /run/fastapi1/metrics
{{- end -}}

{{/* terminationGracePeriodSeconds of the API: preStop sleep + SHUTDOWN_TIMEOUT_S + margin. */}}
{{- define "fastapi1.apiGracePeriod" -}}
{{- $timeout := .Values.config.SHUTDOWN_TIMEOUT_S | default 30 | float64 | ceil | int -}}
{{- add .Values.api.preStopSleepSeconds $timeout .Values.api.terminationGraceMarginSeconds -}}
{{- end -}}

{{/* terminationGracePeriodSeconds of the worker: DELIVERY_SHUTDOWN_TIMEOUT_S + margin. */}}
{{- define "fastapi1.workerGracePeriod" -}}
{{- $timeout := .Values.config.DELIVERY_SHUTDOWN_TIMEOUT_S | default 10 | float64 | ceil | int -}}
{{- add $timeout .Values.worker.terminationGraceMarginSeconds -}}
{{- end -}}
