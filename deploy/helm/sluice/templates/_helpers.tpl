{{/* The release's base name. */}}
{{- define "sluice.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object; "role" adds the component. */}}
{{- define "sluice.labels" -}}
app.kubernetes.io/name: sluice
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- with .role }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{/* Selector labels of a role. */}}
{{- define "sluice.selector" -}}
app.kubernetes.io/name: sluice
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "sluice.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The sluice serve arguments of a role. */}}
{{- define "sluice.args" -}}
{{- $v := .root.Values -}}
- serve
- --{{ .role }}
- --http-addr
- 0.0.0.0:{{ $v.httpPort }}
- --nats-url
- {{ $v.natsURL | quote }}
- --env
- {{ $v.env | quote }}
- --replicas
- {{ $v.replicas | quote }}
{{- if eq .role "worker" }}
- --providers
- {{ $v.worker.providers | quote }}
- --transactional-workers
- {{ $v.worker.transactionalWorkers | quote }}
- --bulk-workers
- {{ $v.worker.bulkWorkers | quote }}
- --quarantine-ratio
- {{ $v.worker.quarantineRatio | quote }}
{{- end }}
{{- range (index $v .role).extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}
