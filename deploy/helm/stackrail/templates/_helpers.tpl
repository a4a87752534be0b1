{{/* Chart name, truncated to the 63 characters a label value may have. */}}
{{- define "stackrail.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "stackrail.fullname" -}}
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

{{- define "stackrail.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "stackrail.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "stackrail.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stackrail.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector of one role: include with (dict "root" $ "component" "api"). */}}
{{- define "stackrail.componentSelector" -}}
{{ include "stackrail.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "stackrail.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "stackrail.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "stackrail.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "stackrail.secretName" -}}
{{- default (include "stackrail.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{/* Kubernetes must not SIGKILL a pod that is still inside Stackrail's own shutdown grace. */}}
{{- define "stackrail.terminationGracePeriodSeconds" -}}
{{- add (div (add (int64 .Values.shutdownGraceMs) 999) 1000) (int64 .Values.terminationGraceMarginSeconds) -}}
{{- end -}}

{{/*
Refuses values that would put a secret in the ConfigMap or start pods that cannot start. Included by
every template that renders pods, so `helm template` / `helm install` fail before anything is applied.
*/}}
{{- define "stackrail.validate" -}}
{{- $secretKeys := list "PULUMI_CONFIG_PASSPHRASE" "GITHUB_WEBHOOK_SECRET" "STACKRAIL_API_TOKENS" "GITHUB_TOKEN" "GITHUB_APP_PRIVATE_KEY" "STACKRAIL_METRICS_TOKEN" "ARGOCD_AUTH_TOKEN" "AWS_SECRET_ACCESS_KEY" "AWS_SESSION_TOKEN" -}}
{{- range $key, $value := .Values.config -}}
{{- if has $key $secretKeys -}}
{{- fail (printf "config.%s is a secret: set it in secrets or in existingSecret, never in the ConfigMap" $key) -}}
{{- end -}}
{{- if regexMatch "://[^/@\\s]*:[^/@\\s]+@" (toString $value) -}}
{{- fail (printf "config.%s carries a password in its URL: set it in secrets or in existingSecret, never in the ConfigMap" $key) -}}
{{- end -}}
{{- if has $key (list "STACKRAIL_SHUTDOWN_GRACE_MS" "STACKRAIL_METRICS_PORT" "STACKRAIL_METRICS_HOST" "STACKRAIL_DATA_DIR" "PORT" "HOST") -}}
{{- fail (printf "config.%s is set by the chart (shutdownGraceMs, metrics.port, dataDir.path, api.port)" $key) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.existingSecret .Values.secrets -}}
{{- fail "set either existingSecret or secrets, not both" -}}
{{- end -}}
{{- if not (or .Values.existingSecret .Values.secrets.PULUMI_CONFIG_PASSPHRASE .Values.config.PULUMI_CONFIG_PASSPHRASE_FILE .Values.config.STACKRAIL_SECRETS_PROVIDER) -}}
{{- fail "PULUMI_CONFIG_PASSPHRASE is required: set secrets.PULUMI_CONFIG_PASSPHRASE, or existingSecret, or config.PULUMI_CONFIG_PASSPHRASE_FILE / config.STACKRAIL_SECRETS_PROVIDER" -}}
{{- end -}}
{{- end -}}

{{/* The pod spec both roles share: include with (dict "root" $ "component" "api" "role" .Values.api). */}}
{{- define "stackrail.podSpec" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
serviceAccountName: {{ include "stackrail.serviceAccountName" $root }}
automountServiceAccountToken: {{ $v.serviceAccount.automountServiceAccountToken }}
terminationGracePeriodSeconds: {{ include "stackrail.terminationGracePeriodSeconds" $root }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
containers:
  - name: stackrail
    image: {{ include "stackrail.image" $root | quote }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    args: ["--role", {{ .component | quote }}]
    envFrom:
      - configMapRef:
          name: {{ include "stackrail.fullname" $root }}
      - secretRef:
          name: {{ include "stackrail.secretName" $root }}
    {{- with .role.extraEnv }}
    env:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    # Both roles listen on PORT: the API's edge, or a worker's probe listener (/healthz, /readyz only).
    ports:
      - name: http
        containerPort: {{ $v.api.port }}
        protocol: TCP
      - name: metrics
        containerPort: {{ $v.metrics.port }}
        protocol: TCP
    startupProbe:
      httpGet:
        path: /healthz
        port: http
      periodSeconds: {{ $v.probes.startup.periodSeconds }}
      failureThreshold: {{ $v.probes.startup.failureThreshold }}
    livenessProbe:
      httpGet:
        path: /healthz
        port: http
      {{- toYaml $v.probes.liveness | nindent 6 }}
    readinessProbe:
      httpGet:
        path: /readyz
        port: http
      {{- toYaml $v.probes.readiness | nindent 6 }}
    resources:
      {{- toYaml .role.resources | nindent 6 }}
    securityContext:
      {{- toYaml $v.securityContext | nindent 6 }}
    volumeMounts:
      - name: data
        mountPath: {{ $v.dataDir.path }}
      - name: tmp
        mountPath: /tmp
volumes:
  - name: data
    emptyDir:
      sizeLimit: {{ $v.dataDir.sizeLimit }}
  - name: tmp
    emptyDir: {}
{{- with .role.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .role.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .role.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .role.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Pod annotations: a config or secret change rolls the pods (checksums of what the chart renders). */}}
{{- define "stackrail.podAnnotations" -}}
checksum/config: {{ include (print .root.Template.BasePath "/configmap.yaml") .root | sha256sum }}
checksum/secret: {{ include (print .root.Template.BasePath "/secret.yaml") .root | sha256sum }}
{{- with .role.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}
