{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "policyhub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects: <release>-<chart>, or just <release> when it already contains the chart name. */}}
{{- define "policyhub.fullname" -}}
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

{{- define "policyhub.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "policyhub.labels" -}}
helm.sh/chart: {{ include "policyhub.chart" . }}
{{ include "policyhub.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: server
app.kubernetes.io/part-of: policyhub
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the pods (immutable in a Deployment: never add to them). */}}
{{- define "policyhub.selectorLabels" -}}
app.kubernetes.io/name: {{ include "policyhub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "policyhub.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "policyhub.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding mongodb-uri and keys: the chart's own or existingSecret. */}}
{{- define "policyhub.secretName" -}}
{{- default (include "policyhub.fullname" .) .Values.existingSecret }}
{{- end }}

{{- define "policyhub.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* Path of the mounted JWKS file, passed as POLICYHUB_JWKS_FILE. */}}
{{- define "policyhub.jwksFile" -}}
{{- printf "%s/%s" (.Values.identity.mountPath | trimSuffix "/") .Values.identity.fileName }}
{{- end }}

{{/* Settings the chart refuses to render. */}}
{{- define "policyhub.validate" -}}
{{- if and (not .Values.existingSecret) (not .Values.mongodb.uri) }}
{{- fail "mongodb.uri (or existingSecret) is required: without it every pod would run its own in-memory store" }}
{{- end }}
{{- if and .Values.mongodb.uri (not (or (hasPrefix "mongodb://" .Values.mongodb.uri) (hasPrefix "mongodb+srv://" .Values.mongodb.uri))) }}
{{- fail "mongodb.uri must start with mongodb:// or mongodb+srv://" }}
{{- end }}
{{- range $key := list "host" "port" "mongodb_uri" "jwks_file" "jwks_uri" "jwt_issuer" "jwt_audience" "spaceone_port" "public_domain_id" }}
{{- if hasKey $.Values.config $key }}
{{- fail (printf "config.%s is set by the chart (containerPort, mongodb.uri, identity.*, spaceone.*)" $key) }}
{{- end }}
{{- end }}
{{- if and .Values.spaceone.enabled (eq (int .Values.spaceone.containerPort) (int .Values.containerPort)) }}
{{- fail "spaceone.containerPort must differ from containerPort" }}
{{- end }}
{{- if .Values.identity.enabled }}
{{- if and .Values.identity.keys .Values.identity.jwksUri }}
{{- fail "identity.keys and identity.jwksUri: set one of them, not both" }}
{{- end }}
{{- if and (not .Values.existingSecret) (not .Values.identity.keys) (not .Values.identity.jwksUri) }}
{{- fail "identity.enabled needs identity.keys (or an existingSecret with the key `keys`) or identity.jwksUri" }}
{{- end }}
{{- if not (and .Values.identity.issuer .Values.identity.audience) }}
{{- fail "identity.enabled needs identity.issuer and identity.audience" }}
{{- end }}
{{- end }}
{{- end }}
