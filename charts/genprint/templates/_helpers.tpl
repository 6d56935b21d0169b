{{/* Names ------------------------------------------------------------------------------------------------- */}}
{{- define "genprint.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Ray appends suffixes (-head-xxxxx, -raycluster-xxxxx) to these names, so keep them short. */}}
{{- define "genprint.fullname" -}}
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

{{- define "genprint.mlflowName" -}}
{{- printf "%s-mlflow" (include "genprint.fullname" .) }}
{{- end }}

{{/* Labels (app.kubernetes.io/* recommended labels) -------------------------------------------------------- */}}
{{- define "genprint.selectorLabels" -}}
app.kubernetes.io/name: {{ include "genprint.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "genprint.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "genprint.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: genprint
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Images ------------------------------------------------------------------------------------------------ */}}
{{- define "genprint.image" -}}
{{- printf "%s:%s" .Values.image.repository (default (printf "%s-cpu" .Chart.AppVersion) .Values.image.tag) }}
{{- end }}

{{- define "genprint.gpuImage" -}}
{{- printf "%s:%s" .Values.gpuImage.repository (default (printf "%s-cuda" .Chart.AppVersion) .Values.gpuImage.tag) }}
{{- end }}

{{/* Required secret references: one helper per Secret, so every use fails with the same message. ------------ */}}
{{- define "genprint.s3Secret" -}}
{{- required "s3.existingSecret is required: name a Secret holding the S3 access key pair (keys s3.accessKeyIdKey and s3.secretAccessKeyKey); credentials are never set in values" .Values.s3.existingSecret }}
{{- end }}

{{- define "genprint.registrySecret" -}}
{{- required "registry.existingSecret is required: name a Secret holding the registry database URL (key registry.urlKey)" .Values.registry.existingSecret }}
{{- end }}

{{- define "genprint.mlflowBackendSecret" -}}
{{- required "mlflow.backendStore.existingSecret is required when mlflow.enabled: name a Secret holding the tracking database URL (key mlflow.backendStore.urlKey)" .Values.mlflow.backendStore.existingSecret }}
{{- end }}

{{/* Where MLflow and training write on S3 ----------------------------------------------------------------- */}}
{{- define "genprint.mlflowArtifacts" -}}
{{- default (printf "s3://%s/mlflow" .Values.s3.bucket) .Values.mlflow.artifactsDestination }}
{{- end }}

{{- define "genprint.trainStorage" -}}
{{- default (printf "s3://%s/ray-results" .Values.s3.bucket) .Values.train.storage }}
{{- end }}

{{- define "genprint.trainOut" -}}
{{- default (printf "s3://%s/bundles/%s" .Values.s3.bucket .Values.train.runName) .Values.train.out }}
{{- end }}

{{- define "genprint.trackingUri" -}}
{{- if .Values.mlflow.enabled }}
{{- printf "http://%s.%s.svc:%v" (include "genprint.mlflowName" .) .Release.Namespace .Values.mlflow.service.port }}
{{- else }}
{{- required "mlflow.external.trackingUri is required when mlflow.enabled is false" .Values.mlflow.external.trackingUri }}
{{- end }}
{{- end }}

{{/* Environment ------------------------------------------------------------------------------------------- */}}
{{/* S3 through the standard AWS variables, which boto3, MLflow and pyarrow all read. */}}
{{- define "genprint.s3Env" -}}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "genprint.s3Secret" . }}
      key: {{ .Values.s3.accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "genprint.s3Secret" . }}
      key: {{ .Values.s3.secretAccessKeyKey }}
- name: AWS_DEFAULT_REGION
  value: {{ .Values.s3.region | quote }}
{{- with .Values.s3.endpoint }}
- name: AWS_ENDPOINT_URL_S3
  value: {{ . | quote }}
- name: MLFLOW_S3_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/* Everything a genprint process on Ray needs: registry, tracking, storage. */}}
{{- define "genprint.appEnv" -}}
- name: GENPRINT_REGISTRY_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "genprint.registrySecret" . }}
      key: {{ .Values.registry.urlKey }}
- name: MLFLOW_TRACKING_URI
  value: {{ include "genprint.trackingUri" . | quote }}
{{ include "genprint.s3Env" . }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Ray cluster spec ------------------------------------------------------------------------------------------
Shared by the RayService and the training RayJob. Called with (dict "root" $ "cluster" <rayCluster values>
"serve" <bool: add the Serve ingress probes to workers>). */}}
{{- define "genprint.rayPodSpec" -}}
{{- $root := .root }}
{{- $group := .group }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- with $root.Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with $group.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $group.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $group.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: {{ .container }}
    image: {{ .image }}
    imagePullPolicy: {{ .pullPolicy }}
    securityContext:
      {{- toYaml $root.Values.securityContext | nindent 6 }}
    env:
      {{- include "genprint.appEnv" $root | nindent 6 }}
      {{- with .env }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    ports:
      {{- toYaml .ports | nindent 6 }}
    resources:
      {{- $resources := deepCopy $group.resources }}
      {{- if .gpus }}
      {{- $_ := set $resources "limits" (merge (dict "nvidia.com/gpu" .gpus) (default dict $resources.limits)) }}
      {{- $_ := set $resources "requests" (merge (dict "nvidia.com/gpu" .gpus) (default dict $resources.requests)) }}
      {{- end }}
      {{- toYaml $resources | nindent 6 }}
    {{- with .probes }}
    readinessProbe:
      {{- toYaml .readiness | nindent 6 }}
    livenessProbe:
      {{- toYaml .liveness | nindent 6 }}
    {{- end }}
    volumeMounts:
      - name: shm
        mountPath: /dev/shm
      - name: ray-tmp
        mountPath: /tmp/ray
      {{- with .cluster.extraVolumeMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
volumes:
  # Ray's object store lives in /dev/shm; the container default (64Mi) is far too small.
  - name: shm
    emptyDir:
      medium: Memory
      sizeLimit: {{ .cluster.shmSize }}
  - name: ray-tmp
    emptyDir: {}
  {{- with .cluster.extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{- define "genprint.rayClusterSpec" -}}
{{- $root := .root }}
{{- $c := .cluster }}
{{- $probes := and .serve $root.Values.serve.probes }}
{{- $env := list }}
{{- if .serve }}
{{- $env = list (dict "name" "GENPRINT_MODEL" "value" (required "serve.model is required: the model to serve (models:/NAME@ALIAS, s3://bucket/prefix or a bundle path in the image)" $root.Values.serve.model)) }}
{{- end }}
rayVersion: {{ $c.rayVersion | quote }}
enableInTreeAutoscaling: {{ $c.enableInTreeAutoscaling }}
{{- if $c.enableInTreeAutoscaling }}
autoscalerOptions:
  {{- toYaml $c.autoscalerOptions | nindent 2 }}
  {{- if not (hasKey $c.autoscalerOptions "securityContext") }}
  securityContext:
    {{- toYaml $root.Values.securityContext | nindent 4 }}
  {{- end }}
{{- end }}
headGroupSpec:
  rayStartParams:
    {{- toYaml $c.head.rayStartParams | nindent 4 }}
  template:
    metadata:
      labels:
        {{- include "genprint.labels" $root | nindent 8 }}
        app.kubernetes.io/component: ray-head
    spec:
      {{- include "genprint.rayPodSpec" (dict "root" $root "cluster" $c "group" $c.head "container" "ray-head" "image" (include "genprint.image" $root) "pullPolicy" $root.Values.image.pullPolicy "env" $env "ports" (list (dict "name" "gcs" "containerPort" 6379) (dict "name" "dashboard" "containerPort" 8265) (dict "name" "client" "containerPort" 10001) (dict "name" "serve" "containerPort" 8000))) | trim | nindent 6 }}
workerGroupSpecs:
  {{- range $kind := list "cpuWorkers" "gpuWorkers" }}
  {{- $w := index $c $kind }}
  {{- if $w.enabled }}
  {{- $gpu := eq $kind "gpuWorkers" }}
  - groupName: {{ $w.groupName }}
    replicas: {{ $w.replicas }}
    minReplicas: {{ $w.minReplicas }}
    maxReplicas: {{ $w.maxReplicas }}
    rayStartParams:
      {{- toYaml $w.rayStartParams | nindent 6 }}
    template:
      metadata:
        labels:
          {{- include "genprint.labels" $root | nindent 10 }}
          app.kubernetes.io/component: {{ printf "ray-worker-%s" $w.groupName }}
      spec:
        {{- include "genprint.rayPodSpec" (dict "root" $root "cluster" $c "group" $w "container" "ray-worker" "image" (ternary (include "genprint.gpuImage" $root) (include "genprint.image" $root) $gpu) "pullPolicy" (ternary $root.Values.gpuImage.pullPolicy $root.Values.image.pullPolicy $gpu) "gpus" (ternary $w.gpus 0 $gpu) "probes" $probes "env" $env "ports" (list (dict "name" "serve" "containerPort" 8000))) | trim | nindent 8 }}
  {{- end }}
  {{- end }}
{{- end }}
