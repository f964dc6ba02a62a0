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
{{- printf "%s/%s" (.Values.auth.mountPath | trimSuffix "/") .Values.auth.fileName }}
{{- end }}

{{/* The Secret and the key in it holding the JWT public keys: auth.existingSecret, or the chart's own. */}}
{{- define "policyhub.keysSecretName" -}}
{{- default (include "policyhub.fullname" .) .Values.auth.existingSecret }}
{{- end }}

{{- define "policyhub.keysSecretKey" -}}
{{- ternary .Values.auth.existingSecretKey "keys" (not (empty .Values.auth.existingSecret)) }}
{{- end }}

{{/* Settings the chart refuses to render. */}}
{{- define "policyhub.validate" -}}
{{- if and (not .Values.existingSecret) (not .Values.mongodb.uri) }}
{{- fail "mongodb.uri (or existingSecret) is required: without it every pod would run its own in-memory store" }}
{{- end }}
{{- if and .Values.mongodb.uri (not (or (hasPrefix "mongodb://" .Values.mongodb.uri) (hasPrefix "mongodb+srv://" .Values.mongodb.uri))) }}
{{- fail "mongodb.uri must start with mongodb:// or mongodb+srv://" }}
{{- end }}
{{- range $key := list "host" "port" "mongodb_uri" "jwks_file" "jwks_uri" "jwt_issuer" "jwt_audience" "metrics_port" "spaceone_port" "public_domain_id" }}
{{- if hasKey $.Values.config $key }}
{{- fail (printf "config.%s is set by the chart (containerPort, mongodb.uri, auth.*, metrics.*, spaceone.*)" $key) }}
{{- end }}
{{- end }}
{{- if and .Values.spaceone.enabled (eq (int .Values.spaceone.containerPort) (int .Values.containerPort)) }}
{{- fail "spaceone.containerPort must differ from containerPort" }}
{{- end }}
{{- if .Values.metrics.enabled }}
{{- if or (eq (int .Values.metrics.containerPort) (int .Values.containerPort)) (and .Values.spaceone.enabled (eq (int .Values.metrics.containerPort) (int .Values.spaceone.containerPort))) }}
{{- fail "metrics.containerPort must differ from containerPort and spaceone.containerPort" }}
{{- end }}
{{- else if .Values.metrics.serviceMonitor.enabled }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled" }}
{{- end }}
{{- if .Values.auth.developmentMode }}
{{- if or .Values.auth.keys .Values.auth.existingSecret .Values.auth.jwksUri }}
{{- fail "auth.developmentMode turns authentication off: unset auth.keys, auth.existingSecret and auth.jwksUri, or leave developmentMode false" }}
{{- end }}
{{- else }}
{{- if and .Values.auth.jwksUri (or .Values.auth.keys .Values.auth.existingSecret) }}
{{- fail "set auth.jwksUri or the keys (auth.keys, auth.existingSecret), not both" }}
{{- end }}
{{- if not (or .Values.auth.keys .Values.auth.existingSecret .Values.auth.jwksUri) }}
{{- fail "authentication is on by default and needs the JWT public keys: set auth.keys (--set-file auth.keys=jwks.json), auth.existingSecret or auth.jwksUri, with auth.issuer and auth.audience; or set auth.developmentMode=true for a trial WITHOUT authentication" }}
{{- end }}
{{- if and .Values.auth.keys .Values.auth.existingSecret }}
{{- fail "set auth.keys or auth.existingSecret, not both" }}
{{- end }}
{{- if and .Values.auth.keys .Values.existingSecret }}
{{- fail "auth.keys is stored in the chart's Secret, which existingSecret replaces: put the keys in a Secret and name it in auth.existingSecret" }}
{{- end }}
{{- if not (and .Values.auth.issuer .Values.auth.audience) }}
{{- fail "authentication needs auth.issuer and auth.audience (the iss and aud every token must carry)" }}
{{- end }}
{{- end }}
{{- end }}
