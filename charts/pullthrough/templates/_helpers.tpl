{{/* Chart name, as in the app.kubernetes.io/name label. */}}
{{- define "pullthrough.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every object name. Kept to 42 characters so that the longest suffix
("-webhook-ca-issuer") still fits a 63-character name.
*/}}
{{- define "pullthrough.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 42 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 42 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 42 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "pullthrough.webhook.fullname" -}}
{{ include "pullthrough.fullname" . }}-webhook
{{- end }}

{{- define "pullthrough.reconciler.fullname" -}}
{{ include "pullthrough.fullname" . }}-reconciler
{{- end }}

{{/* Labels of every object; pass (dict "root" $ "component" "webhook"). */}}
{{- define "pullthrough.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "pullthrough.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: pullthrough
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels a selector matches on; pass (dict "root" $ "component" "webhook"). */}}
{{- define "pullthrough.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pullthrough.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{- define "pullthrough.webhook.serviceAccountName" -}}
{{- if .Values.webhook.serviceAccount.create }}
{{- default (include "pullthrough.webhook.fullname" .) .Values.webhook.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.webhook.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "pullthrough.reconciler.serviceAccountName" -}}
{{- if .Values.reconciler.serviceAccount.create }}
{{- default (include "pullthrough.reconciler.fullname" .) .Values.reconciler.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.reconciler.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* ServiceAccount annotations: the IRSA role first, explicit annotations over it. */}}
{{- define "pullthrough.serviceAccountAnnotations" -}}
{{- $annotations := dict }}
{{- with .root.Values.aws.roleArn }}
{{- $_ := set $annotations "eks.amazonaws.com/role-arn" . }}
{{- end }}
{{- $annotations = mergeOverwrite $annotations (deepCopy .annotations) }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "pullthrough.image" -}}
{{- $repository := required "image.repository is required: leave it out for the published image (ghcr.io/pullthrough/pullthrough), or name a registry the nodes can pull a copy from" .Values.image.repository }}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" $repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}
{{- end }}

{{- define "pullthrough.leaseName" -}}
{{- default (include "pullthrough.reconciler.fullname" .) .Values.reconciler.leaseName }}
{{- end }}

{{/* The namespace label as a selector string, for the reconciler's --namespace-selector. */}}
{{- define "pullthrough.namespaceSelector" -}}
{{- printf "%s=%s" .Values.namespaceLabel.key .Values.namespaceLabel.value }}
{{- end }}

{{/*
The AWS account of the cache rules: config.accountId, or else the account of
aws.roleArn (arn:<partition>:iam::<account>:role/<name>, checked by the schema).
Either is enough; with neither the render fails, saying what to set.
*/}}
{{- define "pullthrough.accountId" -}}
{{- if .Values.config.accountId }}
{{- .Values.config.accountId }}
{{- else if .Values.aws.roleArn }}
{{- index (splitList ":" .Values.aws.roleArn) 4 }}
{{- else }}
{{- fail "config.accountId or aws.roleArn is required: with IRSA, aws.roleArn is enough (the account is taken from it); with EKS Pod Identity, set config.accountId, the 12-digit AWS account that owns the pull-through cache rules (use --set-string)" }}
{{- end }}
{{- end }}

{{/*
The configuration file. Empty top-level strings are left out, so that the
program's own defaults apply; the account is always written out, so that the
ConfigMap shows what runs. Region and account (or a role to take it from) are
required.
*/}}
{{- define "pullthrough.config" -}}
{{- $_ := required "config.region is required: the AWS region of the private registry, such as eu-west-1" .Values.config.region }}
{{- $config := dict }}
{{- range $key, $value := .Values.config }}
{{- if and (not (kindIs "invalid" $value)) (ne (toString $value) "") }}
{{- $_ := set $config $key $value }}
{{- end }}
{{- end }}
{{- $_ := set $config "accountId" (include "pullthrough.accountId" .) }}
{{- toYaml $config }}
{{- end }}

{{/*
The certificate mode, with `auto` resolved: a release whose CA the chart made
keeps it (installing cert-manager later does not switch it), otherwise
cert-manager when the cluster serves it.
*/}}
{{- define "pullthrough.tls.mode" -}}
{{- if eq .Values.tls.mode "auto" }}
{{- $ca := lookup "v1" "Secret" .Release.Namespace (printf "%s-ca" (include "pullthrough.webhook.fullname" .)) }}
{{- if eq (dig "metadata" "labels" "app.kubernetes.io/managed-by" "" $ca) "Helm" }}helm
{{- else if .Capabilities.APIVersions.Has "cert-manager.io/v1" }}certManager
{{- else }}helm
{{- end }}
{{- else }}
{{- .Values.tls.mode }}
{{- end }}
{{- end }}

{{- define "pullthrough.tls.secretName" -}}
{{- if eq (include "pullthrough.tls.mode" .) "secret" }}
{{- required "tls.secret.name is required with tls.mode secret" .Values.tls.secret.name }}
{{- else }}
{{- include "pullthrough.webhook.fullname" . }}-tls
{{- end }}
{{- end }}

{{/* DNS names the API server may use for the webhook Service. */}}
{{- define "pullthrough.webhook.dnsNames" -}}
{{- $service := include "pullthrough.webhook.fullname" . }}
{{- list $service (printf "%s.%s" $service .Release.Namespace) (printf "%s.%s.svc" $service .Release.Namespace) (printf "%s.%s.svc.cluster.local" $service .Release.Namespace) | toJson }}
{{- end }}

{{/*
The chart-generated CA and serving certificate (tls.mode helm), as a dict of
PEM strings: caCert, caKey, cert, key. Both are read back from their Secrets
when they exist, so an upgrade keeps them; a missing serving certificate is
signed again by the kept CA. The result is cached for the render, so the
Secrets and the webhook's caBundle agree.
*/}}
{{- define "pullthrough.tls.generated" -}}
{{- if not (hasKey .Values "pullthroughGeneratedTLS") }}
{{- $fullname := include "pullthrough.webhook.fullname" . }}
{{- $pair := dict }}
{{- $ca := lookup "v1" "Secret" .Release.Namespace (printf "%s-ca" $fullname) }}
{{- $caCert := "" }}
{{- $caKey := "" }}
{{- if and $ca (index ($ca.data | default dict) "tls.crt") (index ($ca.data | default dict) "tls.key") }}
{{- $caCert = index $ca.data "tls.crt" | b64dec }}
{{- $caKey = index $ca.data "tls.key" | b64dec }}
{{- else }}
{{- $new := genCA (printf "%s-ca" $fullname) (int .Values.tls.helm.caValidityDays) }}
{{- $caCert = $new.Cert }}
{{- $caKey = $new.Key }}
{{- end }}
{{- $_ := set $pair "caCert" $caCert }}
{{- $_ := set $pair "caKey" $caKey }}
{{- $serving := lookup "v1" "Secret" .Release.Namespace (printf "%s-tls" $fullname) }}
{{- $servingData := $serving.data | default dict }}
{{- if and $serving (index $servingData "tls.crt") (index $servingData "tls.key") (eq (index $servingData "ca.crt" | default "" | b64dec) $caCert) }}
{{- $_ := set $pair "cert" (index $servingData "tls.crt" | b64dec) }}
{{- $_ := set $pair "key" (index $servingData "tls.key" | b64dec) }}
{{- else }}
{{- $signer := buildCustomCert ($caCert | b64enc) ($caKey | b64enc) }}
{{- $dnsNames := include "pullthrough.webhook.dnsNames" . | fromJsonArray }}
{{- $cert := genSignedCert (printf "%s.%s.svc" $fullname .Release.Namespace) nil $dnsNames (int .Values.tls.helm.validityDays) $signer }}
{{- $_ := set $pair "cert" $cert.Cert }}
{{- $_ := set $pair "key" $cert.Key }}
{{- end }}
{{- $_ := set .Values "pullthroughGeneratedTLS" $pair }}
{{- end }}
{{- toJson .Values.pullthroughGeneratedTLS }}
{{- end }}

{{/* The webhook's caBundle, for the modes that do not inject it. */}}
{{- define "pullthrough.tls.caBundle" -}}
{{- $mode := include "pullthrough.tls.mode" . }}
{{- if eq $mode "helm" }}
{{- (include "pullthrough.tls.generated" . | fromJson).caCert | b64enc }}
{{- else if eq $mode "secret" }}
{{- required "tls.secret.caBundle is required with tls.mode secret: base64 of the PEM CA certificate" .Values.tls.secret.caBundle }}
{{- end }}
{{- end }}

{{/* The webhook's request deadline: a second below timeoutSeconds, at least 500ms. */}}
{{- define "pullthrough.webhook.requestTimeout" -}}
{{- max 500 (sub (mul (int .Values.webhook.timeoutSeconds) 1000) 1000) }}ms
{{- end }}

{{/* Ports the webhook listens on: the node's when on the host network. */}}
{{- define "pullthrough.webhook.port" -}}
{{- if .Values.webhook.hostNetwork.enabled }}{{ .Values.webhook.hostNetwork.port }}{{ else }}{{ .Values.webhook.port }}{{ end }}
{{- end }}

{{- define "pullthrough.webhook.adminPort" -}}
{{- if .Values.webhook.hostNetwork.enabled }}{{ .Values.webhook.hostNetwork.adminPort }}{{ else }}{{ .Values.webhook.adminPort }}{{ end }}
{{- end }}

{{/* host:port for a listen flag; IPv6 addresses get brackets. */}}
{{- define "pullthrough.listen" -}}
{{- if contains ":" .root.Values.bindAddress }}[{{ .root.Values.bindAddress }}]:{{ .port }}{{ else }}{{ .root.Values.bindAddress }}:{{ .port }}{{ end }}
{{- end }}

{{/* The MutatingAdmissionPolicy the reconciler keeps, and the binding the chart owns. */}}
{{- define "pullthrough.policy.name" -}}
{{- include "pullthrough.fullname" . }}
{{- end }}

{{/* The private registry host images are rewritten to, as the program computes it. */}}
{{- define "pullthrough.registryHost" -}}
{{- $suffix := ternary "amazonaws.com.cn" "amazonaws.com" (hasPrefix "cn-" .Values.config.region) }}
{{- default (printf "%s.dkr.ecr.%s.%s" (include "pullthrough.accountId" .) .Values.config.region $suffix) .Values.config.registryHost }}
{{- end }}

{{/* The namespaces the webhook and the policy reach: opted in, never kube-system or the release's own. */}}
{{- define "pullthrough.namespaceMatch" -}}
matchExpressions:
  - key: {{ .Values.namespaceLabel.key | quote }}
    operator: In
    values: [{{ .Values.namespaceLabel.value | quote }}]
  # Never the release's own namespace (its Pods would wait on themselves) nor kube-system.
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
      {{- range (concat (list "kube-system" .Release.Namespace) .Values.webhook.excludeNamespaces) | uniq }}
      - {{ . | quote }}
      {{- end }}
{{- end }}
