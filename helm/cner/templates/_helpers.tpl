{{/*
Chart name, truncated to 63 characters (the DNS label limit).
*/}}
{{- define "cner.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: release-chart, unless the release name already contains
the chart name. Truncated to 63 characters.
*/}}
{{- define "cner.fullname" -}}
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

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "cner.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource. commonLabels never override the chart's own labels.
*/}}
{{- define "cner.labels" -}}
{{- $labels := dict "helm.sh/chart" (include "cner.chart" .) "app.kubernetes.io/managed-by" .Release.Service -}}
{{- $_ := set $labels "app.kubernetes.io/version" (.Values.image.tag | default .Chart.AppVersion | toString | trunc 63 | trimSuffix "-") -}}
{{- $labels = merge $labels (include "cner.selectorLabels" . | fromYaml) .Values.commonLabels -}}
{{- toYaml $labels }}
{{- end }}

{{/*
Selector labels of the stream processor's pods. The component label keeps the
training Job's pods out of the Service, the PodDisruptionBudget and NOTES.txt.
*/}}
{{- define "cner.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cner.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: processor
{{- end }}

{{/*
The selector labels as a kubectl label selector (key=value,...), used by NOTES.txt.
*/}}
{{- define "cner.selectorLabelString" -}}
{{- $labels := include "cner.selectorLabels" . | fromYaml -}}
{{- $pairs := list -}}
{{- range $key := keys $labels | sortAlpha -}}
{{- $pairs = append $pairs (printf "%s=%s" $key (get $labels $key)) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end }}

{{/*
Labels of the training Job and its pods (component "training", so that they never
match the processor's selector).
*/}}
{{- define "cner.trainingLabels" -}}
{{- $labels := include "cner.labels" . | fromYaml -}}
{{- $_ := set $labels "app.kubernetes.io/component" "training" -}}
{{- toYaml $labels }}
{{- end }}

{{/*
Name of the ServiceAccount to use.
*/}}
{{- define "cner.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cner.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Processor image: repository@digest, or repository:tag where the tag defaults to the
appVersion and gets gpu.imageTagSuffix for the CUDA variant.
*/}}
{{- define "cner.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- $tag := .Values.image.tag | default .Chart.AppVersion | toString }}
{{- if .Values.gpu.enabled }}
{{- $tag = printf "%s%s" $tag .Values.gpu.imageTagSuffix }}
{{- end }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
Whether an autoscaler (HPA or KEDA) owns the Deployment's replica count.
*/}}
{{- define "cner.autoscaled" -}}
{{- if or .Values.hpa.enabled .Values.keda.enabled }}true{{ end }}
{{- end }}

{{/*
Directory where the Kafka TLS Secret is mounted.
*/}}
{{- define "cner.kafkaTlsDir" -}}
/etc/cner/kafka-tls
{{- end }}

{{/*
Whether the Kafka TLS Secret is mounted.
*/}}
{{- define "cner.kafkaTlsMounted" -}}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.existingSecret }}true{{ end }}
{{- end }}

{{/*
Connection environment shared by the processor and the training Job: brokers,
client id, model topic, TLS, SASL and Schema Registry. Credentials only ever come
from existing Secrets (secretKeyRef), never from values.
*/}}
{{- define "cner.connectionEnv" -}}
- name: KAFKA_BROKERS
  value: {{ .Values.kafka.brokers | quote }}
- name: KAFKA_CLIENT_ID
  value: {{ .Values.kafka.clientId | quote }}
- name: KAFKA_MODEL_TOPIC
  value: {{ .Values.kafka.modelTopic | quote }}
- name: KAFKA_SSL
  value: {{ .Values.kafka.tls.enabled | toString | quote }}
{{- if include "cner.kafkaTlsMounted" . }}
{{- with .Values.kafka.tls.caKey }}
- name: KAFKA_SSL_CA_FILE
  value: {{ printf "%s/%s" (include "cner.kafkaTlsDir" $) . | quote }}
{{- end }}
{{- if .Values.kafka.tls.certKey }}
- name: KAFKA_SSL_CERT_FILE
  value: {{ printf "%s/%s" (include "cner.kafkaTlsDir" .) .Values.kafka.tls.certKey | quote }}
- name: KAFKA_SSL_KEY_FILE
  value: {{ printf "%s/%s" (include "cner.kafkaTlsDir" .) .Values.kafka.tls.keyKey | quote }}
{{- end }}
{{- end }}
{{- with .Values.kafka.sasl }}
{{- if .mechanism }}
- name: KAFKA_SASL_MECHANISM
  value: {{ .mechanism | quote }}
- name: KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret | quote }}
      key: {{ .usernameKey | quote }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret | quote }}
      key: {{ .passwordKey | quote }}
{{- end }}
{{- end }}
- name: SCHEMA_REGISTRY_URL
  value: {{ .Values.schemaRegistry.url | quote }}
{{- with .Values.schemaRegistry.auth }}
{{- if .existingSecret }}
- name: SCHEMA_REGISTRY_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret | quote }}
      key: {{ .usernameKey | quote }}
- name: SCHEMA_REGISTRY_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret | quote }}
      key: {{ .passwordKey | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Volume and mount of the Kafka TLS Secret (read-only), when configured.
*/}}
{{- define "cner.kafkaTlsVolume" -}}
{{- if include "cner.kafkaTlsMounted" . }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.existingSecret | quote }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{- define "cner.kafkaTlsVolumeMount" -}}
{{- if include "cner.kafkaTlsMounted" . }}
- name: kafka-tls
  mountPath: {{ include "cner.kafkaTlsDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/*
Pod security context: non-root with a fixed UID/GID, seccomp RuntimeDefault.
*/}}
{{- define "cner.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Container security context: read-only root filesystem, no privilege escalation,
every capability dropped, seccomp RuntimeDefault. Not configurable on purpose.
*/}}
{{- define "cner.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Container resources with the GPU limit added (limits only: Kubernetes sets the
request of an extended resource equal to its limit). Call with
(dict "resources" <map> "gpu" <bool> "root" $).
*/}}
{{- define "cner.resources" -}}
{{- $resources := deepCopy (.resources | default dict) }}
{{- if .gpu }}
{{- $gpu := .root.Values.gpu }}
{{- $limits := get $resources "limits" | default dict }}
{{- $_ := set $limits $gpu.resourceName ($gpu.count | int64) }}
{{- $_ = set $resources "limits" $limits }}
{{- end }}
{{- toYaml $resources }}
{{- end }}

{{/*
Checks across values that a JSON schema cannot express. Every failure names the
values to change.
*/}}
{{- define "cner.validate" -}}
{{- $v := .Values }}
{{- if and $v.hpa.enabled $v.keda.enabled }}
{{- fail "hpa.enabled and keda.enabled are mutually exclusive: KEDA manages its own HorizontalPodAutoscaler and refuses a Deployment that another HPA already scales. Enable only one of them." }}
{{- end }}
{{- if not $v.kafka.brokers }}
{{- fail "kafka.brokers is required: set it to the bootstrap brokers, e.g. --set kafka.brokers=kafka-0.kafka:9092,kafka-1.kafka:9092" }}
{{- end }}
{{- if not $v.schemaRegistry.url }}
{{- fail "schemaRegistry.url is required: set it to the Schema Registry URL, e.g. --set schemaRegistry.url=http://schema-registry:8081" }}
{{- end }}
{{- if $v.keda.enabled }}
{{- if gt ($v.keda.minReplicas | int) ($v.keda.maxReplicas | int) }}
{{- fail (printf "keda.minReplicas (%d) must not exceed keda.maxReplicas (%d)" ($v.keda.minReplicas | int) ($v.keda.maxReplicas | int)) }}
{{- end }}
{{- if and (gt ($v.keda.maxReplicas | int) ($v.kafka.inputPartitions | int)) (not $v.keda.allowIdleConsumers) }}
{{- fail (printf "keda.maxReplicas (%d) exceeds kafka.inputPartitions (%d): consumers beyond the partition count sit idle. Lower keda.maxReplicas, raise kafka.inputPartitions to the topic's partition count, or set keda.allowIdleConsumers=true." ($v.keda.maxReplicas | int) ($v.kafka.inputPartitions | int)) }}
{{- end }}
{{- end }}
{{- if $v.hpa.enabled }}
{{- if gt ($v.hpa.minReplicas | int) ($v.hpa.maxReplicas | int) }}
{{- fail (printf "hpa.minReplicas (%d) must not exceed hpa.maxReplicas (%d)" ($v.hpa.minReplicas | int) ($v.hpa.maxReplicas | int)) }}
{{- end }}
{{- if and (gt ($v.hpa.maxReplicas | int) ($v.kafka.inputPartitions | int)) (not $v.hpa.allowIdleConsumers) }}
{{- fail (printf "hpa.maxReplicas (%d) exceeds kafka.inputPartitions (%d): consumers beyond the partition count sit idle. Lower hpa.maxReplicas, raise kafka.inputPartitions, or set hpa.allowIdleConsumers=true." ($v.hpa.maxReplicas | int) ($v.kafka.inputPartitions | int)) }}
{{- end }}
{{- if not (dig "requests" "cpu" "" ($v.resources | default dict)) }}
{{- fail "hpa.enabled scales on CPU utilization, which needs resources.requests.cpu" }}
{{- end }}
{{- end }}
{{- with $v.kafka.sasl }}
{{- if and .mechanism (not .existingSecret) }}
{{- fail "kafka.sasl.mechanism is set but kafka.sasl.existingSecret is empty: name the Secret that holds the SASL username and password" }}
{{- end }}
{{- if and .existingSecret (not .mechanism) }}
{{- fail "kafka.sasl.existingSecret is set but kafka.sasl.mechanism is empty: choose plain, scram-sha-256 or scram-sha-512" }}
{{- end }}
{{- end }}
{{- with $v.kafka.tls }}
{{- if and .existingSecret (not .enabled) }}
{{- fail "kafka.tls.existingSecret is set but kafka.tls.enabled is false: enable TLS or drop the Secret" }}
{{- end }}
{{- if ne (empty .certKey) (empty .keyKey) }}
{{- fail "kafka.tls.certKey and kafka.tls.keyKey go together: set both (client certificate authentication) or neither" }}
{{- end }}
{{- if and .certKey (not .existingSecret) }}
{{- fail "kafka.tls.certKey needs kafka.tls.existingSecret: the client certificate is read from that Secret" }}
{{- end }}
{{- end }}
{{- range $section, $res := dict "resources" $v.resources "training.resources" $v.training.resources }}
{{- range $kind := list "requests" "limits" }}
{{- if hasKey (get ($res | default dict) $kind | default dict) $v.gpu.resourceName }}
{{- fail (printf "%s.%s must not set %s: use gpu.enabled / training.gpu and gpu.count, which put whole GPUs in limits only" $section $kind $v.gpu.resourceName) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and $v.training.enabled (not $v.training.runId) }}
{{- fail "training.enabled needs training.runId: the Job is named after it, so a new runId starts a new training run and an unchanged one leaves the finished Job alone" }}
{{- end }}
{{- end }}

{{/*
Environment of the training Job's containers: the connection settings (publish
writes to kafka.modelTopic), a writable HOME and cache under /tmp, and extraEnv.
*/}}
{{- define "cner.trainingEnv" -}}
{{ include "cner.connectionEnv" . }}
- name: HOME
  value: /tmp
- name: XDG_CACHE_HOME
  value: /tmp/.cache
{{- with .Values.training.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "cner.trainingVolumeMounts" -}}
- name: workspace
  mountPath: /workspace
- name: tmp
  mountPath: /tmp
{{- with include "cner.kafkaTlsVolumeMount" . }}
{{ . | trim }}
{{- end }}
{{- end }}
