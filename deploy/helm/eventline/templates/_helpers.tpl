{{/*
Names. Object names go into Service names and label values, so they must be
DNS labels of at most 63 characters: a longer one fails the render instead of
being cut (two cut names could collide).
*/}}
{{- define "eventline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "eventline.fullname" -}}
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

{{/* eventline.objname (dict "root" $ "suffix" "relay"): <fullname>-<suffix>, at most 63 characters. */}}
{{- define "eventline.objname" -}}
{{- $n := printf "%s-%s" (include "eventline.fullname" .root) .suffix -}}
{{- if gt (len $n) 63 -}}
{{- fail (printf "object name %q is longer than 63 characters: shorten the release name, fullnameOverride or the consumer's name" $n) -}}
{{- end -}}
{{- $n -}}
{{- end -}}

{{/* Labels beside the selector labels (which every object also carries). */}}
{{- define "eventline.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: eventline
{{- end -}}

{{- define "eventline.relaySelector" -}}
app.kubernetes.io/name: {{ include "eventline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: relay
{{- end -}}

{{/* All consumer pods of the release (their metrics Service). */}}
{{- define "eventline.consumersSelector" -}}
app.kubernetes.io/name: {{ include "eventline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: consumer
{{- end -}}

{{/* One consumer's pods: (dict "root" $ "c" $consumer). */}}
{{- define "eventline.consumerSelector" -}}
{{ include "eventline.consumersSelector" .root }}
eventline/consumer: {{ .c.name }}
{{- end -}}

{{/*
eventline.overlay (dict "dst" $map "src" $map): lays src over dst in place,
map by map. Sprig's merge functions are not used because they treat false and
0 as "unset" and would let a default of true win over an explicit false.
*/}}
{{- define "eventline.overlay" -}}
{{- $dst := .dst -}}
{{- range $k, $v := .src -}}
{{- if and (kindIs "map" $v) (kindIs "map" (get $dst $k)) -}}
{{- include "eventline.overlay" (dict "dst" (get $dst $k) "src" $v) -}}
{{- else -}}
{{- $_ := set $dst $k $v -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
eventline.consumers: the consumers, each laid over consumerDefaults and
checked, as a YAML list (fromYamlArray). Every template that needs them
goes through here, so each check fails the render whichever template runs
first.
*/}}
{{- define "eventline.consumers" -}}
{{- $root := . -}}
{{- $out := list -}}
{{- $names := dict -}}
{{- range $i, $raw := .Values.consumers -}}
{{- if not (kindIs "map" $raw) -}}
{{- fail (printf "consumers[%d]: want a map with name, image, group, sourceTopics" $i) -}}
{{- end -}}
{{- $c := deepCopy $root.Values.consumerDefaults -}}
{{- $_ := include "eventline.overlay" (dict "dst" $c "src" (deepCopy $raw)) -}}
{{- $at := printf "consumers[%d]" $i -}}
{{- if not $c.name -}}
{{- fail (printf "%s.name is required (the Deployment is <fullname>-<name>)" $at) -}}
{{- end -}}
{{- $at = printf "consumers[%d] (%s)" $i $c.name -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $c.name) -}}
{{- fail (printf "%s.name must be a DNS label: lower-case letters, digits and '-'" $at) -}}
{{- end -}}
{{- if or (eq $c.name "relay") (eq $c.name "secrets") (hasPrefix "relay-" $c.name) -}}
{{- fail (printf "%s.name %q is taken by the chart's own objects" $at $c.name) -}}
{{- end -}}
{{- if hasKey $names $c.name -}}
{{- fail (printf "%s.name is used twice" $at) -}}
{{- end -}}
{{- $_ := set $names $c.name true -}}
{{- if not $c.group -}}
{{- fail (printf "%s.group is required: the consumer group the program joins (KEDA reads its lag)" $at) -}}
{{- end -}}
{{- if not $c.sourceTopics -}}
{{- fail (printf "%s.sourceTopics is required: the topics the group consumes (not its retry topics)" $at) -}}
{{- end -}}
{{- if not (and $c.image $c.image.repository $c.image.tag) -}}
{{- fail (printf "%s.image.repository and .image.tag are required: the team's own image" $at) -}}
{{- end -}}
{{- if lt (int $c.terminationGracePeriodSeconds) 30 -}}
{{- fail (printf "%s.terminationGracePeriodSeconds is %v: it must be at least 30, beyond the group's ShutdownTimeout, or SIGKILL lands before the in-flight batches commit" $at $c.terminationGracePeriodSeconds) -}}
{{- end -}}
{{- include "eventline.checkEnv" (dict "env" $c.env "at" (printf "%s.env" $at)) -}}
{{- /* Partitions of the largest source topic: given, or from the relay's pipeline file when it lists all of them. */ -}}
{{- $parts := int $c.sourcePartitions -}}
{{- if and (eq $parts 0) $root.Values.relay.pipeline.content -}}
{{- $pipe := fromYaml $root.Values.relay.pipeline.content -}}
{{- $found := dict -}}
{{- range $t := (get $pipe "topics" | default list) -}}
{{- if and (kindIs "map" $t) (has $t.name $c.sourceTopics) $t.partitions -}}
{{- $_ := set $found $t.name (int $t.partitions) -}}
{{- end -}}
{{- end -}}
{{- if eq (len $found) (len $c.sourceTopics) -}}
{{- range $n := values $found -}}
{{- if gt $n $parts -}}{{- $parts = $n -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $_ := set $c "sourcePartitions" $parts -}}
{{- $a := $c.autoscaling -}}
{{- if $a.enabled -}}
{{- if lt (int $a.minReplicaCount) 1 -}}
{{- fail (printf "%s.autoscaling.minReplicaCount must be at least 1: the same pods consume the retry topics, and neither trigger wakes a group with no pod (the Prometheus gauge comes from the pods; the Kafka trigger sees only the source topics)" $at) -}}
{{- end -}}
{{- if lt (int $a.maxReplicaCount) (int $a.minReplicaCount) -}}
{{- fail (printf "%s.autoscaling.maxReplicaCount (%v) is below minReplicaCount (%v)" $at $a.maxReplicaCount $a.minReplicaCount) -}}
{{- end -}}
{{- if and (gt $parts 0) (gt (int $a.maxReplicaCount) $parts) -}}
{{- fail (printf "%s.autoscaling.maxReplicaCount (%v) exceeds the source partitions (%d): a member beyond one per partition gets nothing to consume" $at $a.maxReplicaCount $parts) -}}
{{- end -}}
{{- if eq $a.trigger "prometheus" -}}
{{- if not $a.prometheus.serverAddress -}}
{{- fail (printf "%s.autoscaling.prometheus.serverAddress is required with the prometheus trigger (or set consumerDefaults.autoscaling.prometheus.serverAddress)" $at) -}}
{{- end -}}
{{- else if eq $a.trigger "kafka" -}}
{{- if eq (include "eventline.kedaSasl" $root) "!" -}}
{{- fail (printf "%s.autoscaling.trigger kafka: KEDA's Kafka scaler takes no static OAUTHBEARER token (it fetches its own from a token endpoint); use the prometheus trigger" $at) -}}
{{- end -}}
{{- else -}}
{{- fail (printf "%s.autoscaling.trigger %q: want prometheus or kafka" $at $a.trigger) -}}
{{- end -}}
{{- end -}}
{{- $out = append $out $c -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/*
eventline.checkEnv (dict "env" $list "at" "relay.extraEnv"): plain variables
only. Secrets reach the pods as files from `secret`.
*/}}
{{- define "eventline.checkEnv" -}}
{{- $secretVars := list "DATABASE_URL" "KAFKA_SASL_PASSWORD" "KAFKA_SASL_OAUTH_TOKEN" "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO" "SCHEMA_REGISTRY_BEARER_TOKEN" "PGPASSWORD" "AWS_SECRET_ACCESS_KEY" "AWS_SESSION_TOKEN" "EVENTLINE_DEV_REGISTRY_USER_INFO" -}}
{{- range $i, $e := .env -}}
{{- if not (and (kindIs "map" $e) $e.name) -}}
{{- fail (printf "%s[%d]: want {name, value}" $.at $i) -}}
{{- end -}}
{{- if has $e.name $secretVars -}}
{{- fail (printf "%s[%d]: %s holds a secret; put it in the Secret and name its key in secret.keys (it reaches the pod as %s_FILE)" $.at $i $e.name $e.name) -}}
{{- end -}}
{{- if hasKey $e "valueFrom" -}}
{{- if hasKey $e.valueFrom "secretKeyRef" -}}
{{- fail (printf "%s[%d] (%s): secretKeyRef puts a secret in a variable; mount it as a file through secret.keys" $.at $i $e.name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
eventline.kedaSasl: KEDA's name for the SASL mechanism, "" for none, "!" for
one KEDA's Kafka scaler cannot use with eventline's secrets.
*/}}
{{- define "eventline.kedaSasl" -}}
{{- $m := upper .Values.kafka.sasl.mechanism -}}
{{- if eq $m "" -}}
{{- else if eq $m "PLAIN" -}}plaintext
{{- else if eq $m "SCRAM-SHA-256" -}}scram_sha256
{{- else if eq $m "SCRAM-SHA-512" -}}scram_sha512
{{- else -}}!
{{- end -}}
{{- end -}}

{{/*
eventline.secretFiles (dict "root" $ "override" $consumerSecret): the secret
files of a pod, as a YAML list of {key, var} (var "" for a file no variable
names), with the Secret's name first: {secretName, files}.
*/}}
{{- define "eventline.secretFiles" -}}
{{- $root := .root -}}
{{- $ov := .override | default dict -}}
{{- $keys := deepCopy $root.Values.secret.keys -}}
{{- if $ov.keys -}}
{{- $_ := include "eventline.overlay" (dict "dst" $keys "src" $ov.keys) -}}
{{- end -}}
{{- $name := $ov.existingSecret | default $root.Values.secret.existingSecret -}}
{{- if and $root.Values.secret.create (not $ov.existingSecret) -}}
{{- $name = include "eventline.objname" (dict "root" $root "suffix" "secrets") -}}
{{- end -}}
{{- $vars := dict
  "databaseURL" "DATABASE_URL_FILE"
  "kafkaSaslPassword" "KAFKA_SASL_PASSWORD_FILE"
  "kafkaSaslOAuthToken" "KAFKA_SASL_OAUTH_TOKEN_FILE"
  "kafkaTLSCA" "KAFKA_TLS_CA_FILE"
  "kafkaTLSCert" "KAFKA_TLS_CERT_FILE"
  "kafkaTLSKey" "KAFKA_TLS_KEY_FILE"
  "schemaRegistryBasicAuthUserInfo" "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE"
  "schemaRegistryBearerToken" "SCHEMA_REGISTRY_BEARER_TOKEN_FILE"
  "schemaRegistryCA" "SCHEMA_REGISTRY_CA_FILE"
  "schemaRegistryCert" "SCHEMA_REGISTRY_CERT_FILE"
  "schemaRegistryKey" "SCHEMA_REGISTRY_KEY_FILE"
  "postgresCA" "" -}}
{{- $files := list -}}
{{- $seen := dict -}}
{{- range $k := keys $vars | sortAlpha -}}
{{- $key := get $keys $k -}}
{{- if $key -}}
{{- if not (regexMatch "^[-._a-zA-Z0-9]+$" $key) -}}
{{- fail (printf "secret.keys.%s %q is not a valid Secret key" $k $key) -}}
{{- end -}}
{{- if hasKey $seen $key -}}
{{- fail (printf "secret.keys.%s: key %q is already used by secret.keys.%s" $k $key (get $seen $key)) -}}
{{- end -}}
{{- $_ := set $seen $key $k -}}
{{- $files = append $files (dict "key" $key "var" (get $vars $k) "name" $k) -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "secretName" $name "files" $files "keys" $keys) -}}
{{- end -}}

{{/*
eventline.checkConnection (dict "root" $ "s" $secretFiles "at" "relay"):
the settings eventline would refuse at start, refused at install.
*/}}
{{- define "eventline.checkConnection" -}}
{{- $v := .root.Values -}}
{{- $k := .s.keys -}}
{{- if not .s.secretName -}}
{{- fail "secret.existingSecret is required: the name of the Secret holding the database URL and the other secrets (or secret.create=true with secret.data)" -}}
{{- end -}}
{{- if not $k.databaseURL -}}
{{- fail (printf "%s: secret.keys.databaseURL is required: the Secret's key holding the PostgreSQL connection string (DATABASE_URL_FILE)" .at) -}}
{{- end -}}
{{- if not $v.kafka.brokers -}}
{{- fail "kafka.brokers is required (KAFKA_BROKERS)" -}}
{{- end -}}
{{- if not $v.schemaRegistry.url -}}
{{- fail "schemaRegistry.url is required (SCHEMA_REGISTRY_URL)" -}}
{{- end -}}
{{- $m := upper $v.kafka.sasl.mechanism -}}
{{- if or (eq $m "PLAIN") (eq $m "SCRAM-SHA-256") (eq $m "SCRAM-SHA-512") -}}
{{- if not (and $v.kafka.sasl.username $k.kafkaSaslPassword) -}}
{{- fail (printf "%s: kafka.sasl.mechanism %s needs kafka.sasl.username and secret.keys.kafkaSaslPassword" .at $m) -}}
{{- end -}}
{{- else if eq $m "OAUTHBEARER" -}}
{{- if not $k.kafkaSaslOAuthToken -}}
{{- fail (printf "%s: kafka.sasl.mechanism OAUTHBEARER needs secret.keys.kafkaSaslOAuthToken" .at) -}}
{{- end -}}
{{- else if eq $m "AWS_MSK_IAM" -}}
{{- fail "kafka.sasl.mechanism AWS_MSK_IAM: eventline reads AWS_SECRET_ACCESS_KEY from a variable only, and this chart puts no secret in a variable" -}}
{{- else if ne $m "" -}}
{{- fail (printf "kafka.sasl.mechanism %q: want PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER" $v.kafka.sasl.mechanism) -}}
{{- end -}}
{{- if ne (not $k.kafkaTLSCert) (not $k.kafkaTLSKey) -}}
{{- fail (printf "%s: secret.keys.kafkaTLSCert and kafkaTLSKey go together" .at) -}}
{{- end -}}
{{- if ne (not $k.schemaRegistryCert) (not $k.schemaRegistryKey) -}}
{{- fail (printf "%s: secret.keys.schemaRegistryCert and schemaRegistryKey go together" .at) -}}
{{- end -}}
{{- if and $k.schemaRegistryBasicAuthUserInfo $k.schemaRegistryBearerToken -}}
{{- fail (printf "%s: secret.keys.schemaRegistryBasicAuthUserInfo or schemaRegistryBearerToken, not both" .at) -}}
{{- end -}}
{{- if and (or $k.schemaRegistryCA $k.schemaRegistryCert) (hasPrefix "http://" $v.schemaRegistry.url) -}}
{{- fail "schemaRegistry.url is http:// but a registry CA or certificate is set: use https://" -}}
{{- end -}}
{{- end -}}

{{/*
eventline.connectionEnv (dict "root" $ "s" $secretFiles): the variables
every eventline process reads, secrets as <VAR>_FILE paths only.
*/}}
{{- define "eventline.connectionEnv" -}}
{{- $v := .root.Values -}}
- name: KAFKA_BROKERS
  value: {{ $v.kafka.brokers | quote }}
- name: SCHEMA_REGISTRY_URL
  value: {{ $v.schemaRegistry.url | quote }}
{{- if $v.kafka.tls.enabled }}
- name: KAFKA_TLS
  value: "true"
{{- end }}
{{- with $v.kafka.tls.serverName }}
- name: KAFKA_TLS_SERVER_NAME
  value: {{ . | quote }}
{{- end }}
{{- if $v.kafka.tls.insecureSkipVerify }}
- name: KAFKA_TLS_INSECURE_SKIP_VERIFY
  value: "true"
{{- end }}
{{- with $v.kafka.sasl.mechanism }}
- name: KAFKA_SASL_MECHANISM
  value: {{ upper . | quote }}
{{- end }}
{{- with $v.kafka.sasl.username }}
- name: KAFKA_SASL_USERNAME
  value: {{ . | quote }}
{{- end }}
{{- if $v.kafka.sasl.allowPlaintext }}
- name: KAFKA_SASL_ALLOW_PLAINTEXT
  value: "true"
{{- end }}
{{- if $v.schemaRegistry.allowPlaintext }}
- name: SCHEMA_REGISTRY_ALLOW_PLAINTEXT
  value: "true"
{{- end }}
{{- range .s.files }}
{{- if .var }}
- name: {{ .var }}
  value: {{ printf "%s/%s" $v.secret.mountPath .key | quote }}
{{- end }}
{{- end }}
- name: EVENTLINE_METRICS_ADDR
  value: {{ printf ":%d" (int $v.metrics.port) | quote }}
- name: EVENTLINE_LOG_LEVEL
  value: {{ $v.logLevel | quote }}
{{- with $v.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{/*
eventline.uniqueEnv (dict "env" $list "at" "relay"): a variable set twice is
refused; Kubernetes would keep the last one without a word.
*/}}
{{- define "eventline.uniqueEnv" -}}
{{- $seen := dict -}}
{{- range .env -}}
{{- if hasKey $seen .name -}}
{{- fail (printf "%s: the variable %s is set twice (the chart sets it; change the chart's value instead)" $.at .name) -}}
{{- end -}}
{{- $_ := set $seen .name true -}}
{{- end -}}
{{- end -}}

{{/* eventline.secretVolume (dict "root" $ "s" $secretFiles): the read-only secret volume. */}}
{{- define "eventline.secretVolume" -}}
- name: secrets
  secret:
    secretName: {{ .s.secretName }}
    defaultMode: 0440
    items:
{{- range .s.files }}
      - key: {{ .key }}
        path: {{ .key }}
{{- end }}
{{- end -}}

{{- define "eventline.podAnnotations" -}}
{{- if .Values.metrics.podAnnotations -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.metrics.port | quote }}
prometheus.io/path: /metrics
{{- end -}}
{{- end -}}

{{- define "eventline.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: metrics
  initialDelaySeconds: 5
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: metrics
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 3
{{- end -}}
