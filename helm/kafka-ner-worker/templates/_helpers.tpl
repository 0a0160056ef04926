{{/*
Names and labels, following the Helm chart conventions (app.kubernetes.io/*).
*/}}

{{- define "kafka-ner-worker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kafka-ner-worker.fullname" -}}
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

{{- define "kafka-ner-worker.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kafka-ner-worker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kafka-ner-worker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kafka-ner-worker.labels" -}}
helm.sh/chart: {{ include "kafka-ner-worker.chart" . }}
{{ include "kafka-ner-worker.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: worker
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "kafka-ner-worker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kafka-ner-worker.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The GPU image is used when the pod asks for GPUs or the engine is vLLM; the tag defaults to
"<appVersion>-<cpu|gpu>". A digest, when given, pins the image exactly.
*/}}
{{- define "kafka-ner-worker.useGpu" -}}
{{- if or (gt (int .Values.gpu.count) 0) (eq .Values.config.engine "vllm") -}}true{{- end -}}
{{- end -}}

{{- define "kafka-ner-worker.image" -}}
{{- $flavor := ternary "gpu" "cpu" (eq (include "kafka-ner-worker.useGpu" .) "true") -}}
{{- $tag := default (printf "%s-%s" .Chart.AppVersion $flavor) .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
One worker setting as the string its NER_* variable holds. Helm reads every number in values as
a float, so whole numbers are printed as integers (1048576, not 1.048576e+06); lists become
comma-separated; booleans "true"/"false".
*/}}
{{- define "kafka-ner-worker.envValue" -}}
{{- $v := . -}}
{{- if kindIs "slice" $v -}}
{{- join "," $v -}}
{{- else if kindIs "bool" $v -}}
{{- ternary "true" "false" $v -}}
{{- else if or (kindIs "float64" $v) (kindIs "int64" $v) (kindIs "int" $v) -}}
{{- if eq (float64 $v) (floor $v) -}}{{- int64 $v -}}{{- else -}}{{- $v -}}{{- end -}}
{{- else -}}
{{- $v -}}
{{- end -}}
{{- end -}}

{{/* The model cache's claim: the user's existing one or the one the chart creates. */}}
{{- define "kafka-ner-worker.modelCacheClaim" -}}
{{- if .Values.modelCache.existingClaim -}}
{{- .Values.modelCache.existingClaim -}}
{{- else if .Values.modelCache.persistence.enabled -}}
{{- include "kafka-ner-worker.fullname" . }}-model-cache
{{- end -}}
{{- end -}}

{{/* Where mounted secrets live inside the container. */}}
{{- define "kafka-ner-worker.secretsDir" -}}/var/run/secrets/kafka-ner-worker{{- end -}}

{{/*
Grace period: the worker's drain timeout plus a margin for closing the Kafka clients, so that
Kubernetes never kills a worker that is still committing.
*/}}
{{- define "kafka-ner-worker.terminationGracePeriodSeconds" -}}
{{- add (ceil .Values.config.drainTimeoutS | int) .Values.terminationGracePeriodExtraSeconds -}}
{{- end -}}

{{/*
Stream processes per pod, as the worker will run them: config.processes, or the count the worker
derives where the chart can know it (1: the hf engine on a CPU); empty where the worker derives
it from the node's cores (an engine on a GPU, the remote engine), which the chart cannot see.
*/}}
{{- define "kafka-ner-worker.streamProcesses" -}}
{{- $config := .Values.config -}}
{{- if gt (int $config.processes) 0 -}}
{{- int $config.processes -}}
{{- else if and (eq $config.engine "hf") (or (eq $config.device "cpu") (and (eq $config.device "auto") (eq (int .Values.gpu.count) 0))) -}}
1
{{- end -}}
{{- end -}}

{{/*
KEDA's replica cap. Every stream process is a member of the consumer group and a partition has
one member, so pods beyond partitions / processes per pod only add idle members. KEDA's own cap
(allowIdleConsumers: false) counts pods against partitions, which is right for one process a
pod only: with more, the chart caps maxReplicaCount at autoscaling.keda.inputPartitions /
processes. (validate checks that the values allow a cap.)
*/}}
{{- define "kafka-ner-worker.kedaMaxReplicaCount" -}}
{{- $keda := .Values.autoscaling.keda -}}
{{- $partitions := int (default 0 $keda.inputPartitions) -}}
{{- $processes := int (default 0 (include "kafka-ner-worker.streamProcesses" .)) -}}
{{- if and (gt $partitions 0) (gt $processes 0) -}}
{{- min (int $keda.maxReplicaCount) (div $partitions $processes) -}}
{{- else -}}
{{- int $keda.maxReplicaCount -}}
{{- end -}}
{{- end -}}

{{/* KEDA's values against the stream processes per pod: see kafka-ner-worker.kedaMaxReplicaCount. */}}
{{- define "kafka-ner-worker.validateKeda" -}}
{{- $keda := .Values.autoscaling.keda -}}
{{- $processes := include "kafka-ner-worker.streamProcesses" . -}}
{{- $partitions := int (default 0 $keda.inputPartitions) -}}
{{- if not $processes -}}
{{- fail (printf "config.processes: set it with autoscaling.keda.enabled and the %s engine%s: KEDA's replica cap is the input topic's partitions / stream processes per pod, and the worker derives the count from the node's cores, which the chart cannot know" .Values.config.engine (ternary " on a GPU" "" (ne .Values.config.engine "remote"))) -}}
{{- end -}}
{{- if and (gt (int $processes) 1) (eq $partitions 0) -}}
{{- fail (printf "autoscaling.keda.inputPartitions: required when a pod runs %s stream processes (config.processes): the partition count of config.inputTopic, to cap the replicas at partitions / %s (KEDA's own cap counts pods, not processes; members beyond the partitions sit idle)" $processes $processes) -}}
{{- end -}}
{{- if and (gt $partitions 0) (lt $partitions (int $processes)) -}}
{{- fail (printf "autoscaling.keda.inputPartitions: %d partitions cannot give each of a pod's %s stream processes (config.processes) one; lower config.processes or add partitions" $partitions $processes) -}}
{{- end -}}
{{- $cap := int (include "kafka-ner-worker.kedaMaxReplicaCount" .) -}}
{{- if gt (int $keda.minReplicaCount) $cap -}}
{{- fail (printf "autoscaling.keda.minReplicaCount: must not exceed the replica cap, %d (autoscaling.keda.maxReplicaCount, or inputPartitions / config.processes when lower)" $cap) -}}
{{- end -}}
{{- end -}}

{{/* Settings the chart derives itself; setting them in `config` too would be ambiguous. */}}
{{- define "kafka-ner-worker.validate" -}}
{{- $tls := .Values.secrets.tls -}}
{{- if eq .Values.mode "run" -}}
{{- $_ := required "config.kafkaBootstrapServers: required with mode run: the Kafka bootstrap servers (host:port, comma-separated) the worker connects to" .Values.config.kafkaBootstrapServers -}}
{{- else -}}
{{- if .Values.autoscaling.keda.enabled -}}
{{- fail "autoscaling.keda.enabled: KEDA scales the stream worker (mode run) on consumer lag; for mode serve use autoscaling.hpa" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.autoscaling.hpa.enabled (ne .Values.mode "serve") -}}
{{- fail "autoscaling.hpa.enabled: the HorizontalPodAutoscaler is for mode serve; the stream worker scales on consumer lag with autoscaling.keda" -}}
{{- end -}}
{{- if and .Values.autoscaling.hpa.enabled (gt (int .Values.autoscaling.hpa.minReplicas) (int .Values.autoscaling.hpa.maxReplicas)) -}}
{{- fail "autoscaling.hpa.minReplicas: must not exceed autoscaling.hpa.maxReplicas" -}}
{{- end -}}
{{- if and .Values.modelCache.persistence.enabled .Values.modelCache.existingClaim -}}
{{- fail "modelCache.persistence.enabled: the chart creates a claim or mounts modelCache.existingClaim, not both" -}}
{{- end -}}
{{- if $tls.secretName -}}
{{- range $setting := list "sslCafile" "sslCertfile" "sslKeyfile" -}}
{{- if index $.Values.config $setting -}}
{{- fail (printf "config.%s: leave it empty when secrets.tls.secretName is set; the chart mounts the file and sets the path" $setting) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if ge (mulf .Values.config.drainTimeoutS 1000.0) (float64 .Values.config.maxPollIntervalMs) -}}
{{- fail "config.drainTimeoutS: must be shorter than config.maxPollIntervalMs (the consumer's rebalance timeout; the worker refuses it too)" -}}
{{- end -}}
{{- if eq (toString .Values.image.tag) "latest" -}}
{{- fail "image.tag: 'latest' is not allowed: pin a version (empty: the chart's appVersion)" -}}
{{- end -}}
{{- range $i, $var := .Values.extraEnv -}}
{{- if hasPrefix "NER_" $var.name -}}
{{- fail (printf "extraEnv[%d].name: %s is a worker setting; set config.%s instead" $i $var.name ($var.name | trimPrefix "NER_" | lower | camelcase | untitle)) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.autoscaling.keda.enabled (eq .Values.mode "run") -}}
{{- include "kafka-ner-worker.validateKeda" . -}}
{{- end -}}
{{- end -}}

{{/*
Environment beyond the ConfigMap: the paths of mounted secrets (NER_*_FILE and the TLS files)
and the user's extraEnv.
*/}}
{{- define "kafka-ner-worker.env" -}}
{{- $secretsDir := include "kafka-ner-worker.secretsDir" . -}}
{{- $tls := .Values.secrets.tls -}}
{{- if .Values.secrets.saslPassword.secretName }}
- name: NER_SASL_PASSWORD_FILE
  value: {{ $secretsDir }}/sasl/password
{{- end }}
{{- if .Values.secrets.sslKeyPassword.secretName }}
- name: NER_SSL_KEY_PASSWORD_FILE
  value: {{ $secretsDir }}/ssl-key-password/password
{{- end }}
{{- if .Values.secrets.schemaRegistryPassword.secretName }}
- name: NER_SCHEMA_REGISTRY_PASSWORD_FILE
  value: {{ $secretsDir }}/schema-registry-password/password
{{- end }}
{{- if .Values.secrets.hfToken.secretName }}
- name: HF_TOKEN_PATH
  value: {{ $secretsDir }}/hf/token
{{- end }}
{{- if $tls.secretName }}
{{- if $tls.caKey }}
- name: NER_SSL_CAFILE
  value: {{ $secretsDir }}/tls/ca.crt
{{- end }}
{{- if $tls.certKey }}
- name: NER_SSL_CERTFILE
  value: {{ $secretsDir }}/tls/tls.crt
{{- end }}
{{- if $tls.keyKey }}
- name: NER_SSL_KEYFILE
  value: {{ $secretsDir }}/tls/tls.key
{{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}
