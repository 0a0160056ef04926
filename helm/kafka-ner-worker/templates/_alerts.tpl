{{/*
The alert rules, as Prometheus rule groups. Rendered into the PrometheusRule and checked by
`promtool check rules` and `promtool test rules` (tests/alerts.test.yaml).
$sel selects this release's series: by default the job that the ServiceMonitor produces.
*/}}
{{- define "kafka-ner-worker.alertGroups" -}}
{{- $pr := .Values.metrics.prometheusRule -}}
{{- $sel := default (printf "job=%q" (include "kafka-ner-worker.fullname" .)) $pr.selector -}}
{{- $r := $pr.rules -}}
{{- $runbook := printf "%s#" (default "docs/runbook.md" $pr.runbookBaseUrl) -}}
- name: kafka-ner-worker.rules
  rules:
    {{- with $r.workersDown }}
    {{- if .enabled }}
    - alert: NerWorkerDown
      # Every other rule reads the workers' own series, which vanish with the workers; this one
      # reads Prometheus' own `up` of the scrape job: every target down, or no target at all (the
      # pods are gone and service discovery lists nothing, so `up` itself is absent).
      expr: |-
        max by (namespace, job) (up{ {{- $sel -}} }) == 0
        or
        absent(up{ {{- $sel -}} })
      for: {{ .for }}
      labels:
        severity: {{ .severity }}
        {{- with $pr.ruleLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        summary: No worker is up.
        description: >-
          Prometheus has scraped no running worker of {{ $sel }} for {{ .for }}: nothing reads the
          input topic. Look at the pods (crash loop, pending, image pull) and at the scrape target.
        runbook_url: {{ $runbook }}nerworkerdown
    {{- end }}
    {{- end }}
    {{- with $r.consumerLagGrowing }}
    {{- if .enabled }}
    - alert: NerWorkerConsumerLagGrowing
      # Lag is both large and still rising: the workers fall further behind the producers.
      expr: |-
        sum by (namespace, job, topic) (ner_consumer_lag_records{ {{- $sel -}} }) > {{ .minLag | int64 }}
        and
        sum by (namespace, job, topic) (delta(ner_consumer_lag_records{ {{- $sel -}} }[{{ .window }}])) > 0
      for: {{ .for }}
      labels:
        severity: {{ .severity }}
        {{- with $pr.ruleLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        summary: Consumer lag on {{`{{ $labels.topic }}`}} keeps growing.
        description: >-
          {{`{{ $value }}`}} records wait on topic {{`{{ $labels.topic }}`}} ({{`{{ $labels.job }}`}}) and the lag
          rose over the last {{ .window }}. Add replicas (up to the partition count) or check the engine.
        runbook_url: {{ $runbook }}nerworkerconsumerlaggrowing
    {{- end }}
    {{- end }}
    {{- with $r.deadLetterRatio }}
    {{- if .enabled }}
    - alert: NerWorkerDeadLetterRate
      expr: |-
        sum by (namespace, job) (rate(ner_records_dead_lettered_total{ {{- $sel -}} }[{{ .window }}]))
        /
        sum by (namespace, job) (rate(ner_records_received_total{ {{- $sel -}} }[{{ .window }}]))
        > {{ .threshold }}
      for: {{ .for }}
      labels:
        severity: {{ .severity }}
        {{- with $pr.ruleLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        summary: Many records go to the dead-letter topic.
        description: >-
          {{`{{ $value | humanizePercentage }}`}} of the records read by {{`{{ $labels.job }}`}} were dead-lettered over
          the last {{ .window }}. The reason header of each dead letter (and the metric's reason label) says why.
        runbook_url: {{ $runbook }}nerworkerdeadletterrate
    {{- end }}
    {{- end }}
    {{- with $r.noProgress }}
    {{- if .enabled }}
    - alert: NerWorkerNoProgress
      # Records are waiting but none has been acknowledged for a while: stuck, not just slow.
      expr: |-
        (time() - max by (namespace, job) (ner_last_progress_timestamp_seconds{ {{- $sel -}} })) > {{ .stalledSeconds | int64 }}
        and on (namespace, job)
        sum by (namespace, job) (ner_consumer_lag_records{ {{- $sel -}} }) > 0
      for: {{ .for }}
      labels:
        severity: {{ .severity }}
        {{- with $pr.ruleLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        summary: The worker makes no progress although records are waiting.
        description: >-
          {{`{{ $labels.job }}`}} has acknowledged no record for {{`{{ $value | humanizeDuration }}`}} while its
          consumer lag is above zero. Look at the engine, the broker and paused partitions.
        runbook_url: {{ $runbook }}nerworkernoprogress
    {{- end }}
    {{- end }}
    {{- with $r.engineErrors }}
    {{- if .enabled }}
    - alert: NerWorkerEngineErrors
      expr: |-
        sum by (namespace, job) (increase(ner_engine_errors_total{ {{- $sel -}} }[{{ .window }}])) > {{ .threshold }}
      for: {{ .for }}
      labels:
        severity: {{ .severity }}
        {{- with $pr.ruleLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        summary: The inference engine keeps failing.
        description: >-
          {{`{{ $value }}`}} engine batches of {{`{{ $labels.job }}`}} failed over the last {{ .window }}.
        runbook_url: {{ $runbook }}nerworkerengineerrors
    {{- end }}
    {{- end }}
    {{- with $r.commitFailures }}
    {{- if .enabled }}
    - alert: NerWorkerCommitFailures
      expr: |-
        sum by (namespace, job) (increase(ner_commit_failures_total{ {{- $sel -}} }[{{ .window }}])) > 0
      for: {{ .for }}
      labels:
        severity: {{ .severity }}
        {{- with $pr.ruleLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        summary: Offset commits fail.
        description: >-
          {{`{{ $value }}`}} offset commits of {{`{{ $labels.job }}`}} failed over the last {{ .window }}; after a
          restart or rebalance these records will be processed again.
        runbook_url: {{ $runbook }}nerworkercommitfailures
    {{- end }}
    {{- end }}
{{- end -}}
