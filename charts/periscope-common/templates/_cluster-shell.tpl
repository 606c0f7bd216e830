{{/*
Everything a cluster that hosts shell sessions needs, identical in both charts so the kubeconfig
inside a shell pod looks the same whichever side provisioned it (guide §1, §3, §8).

Call with (dict "root" $ "provisioner" (dict "name" <ServiceAccount> "namespace" <namespace>)):
the provisioner is the ServiceAccount that creates session Secrets, tokens and Pods: the server's
for direct backends, the agent's on agent-managed clusters.
*/}}
{{- define "periscope-common.clusterShell.manifests" -}}
{{- $root := .root -}}
{{- $cs := $root.Values.clusterShell -}}
{{- if $cs.enabled }}
{{- $ns := $cs.namespace -}}
{{- $fullname := include "periscope-common.fullname" $root -}}
{{- /* A chart never owns its own release namespace: `helm install -n X --create-namespace` already made it. */ -}}
{{- if and $cs.createNamespace (ne $ns $root.Release.Namespace) }}
---
apiVersion: v1
kind: Namespace
metadata:
  name: {{ $ns }}
  labels:
    {{- include "periscope-common.labels" $root | nindent 4 }}
    periscope.io/purpose: cluster-shell
    {{- with $cs.podSecurityStandard }}
    # Session pods are built to pass this Pod Security level; enforcing it catches drift.
    pod-security.kubernetes.io/enforce: {{ . }}
    pod-security.kubernetes.io/warn: {{ . }}
    pod-security.kubernetes.io/audit: {{ . }}
    {{- end }}
  annotations:
    periscope.io/created-by: {{ printf "%s/%s" $root.Release.Namespace $root.Release.Name }}
{{- end }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ $fullname }}-shell-provisioner
  namespace: {{ $ns }}
  labels:
    {{- include "periscope-common.labels" $root | nindent 4 }}
    periscope.io/purpose: cluster-shell
rules:
  # Session pods: create, wait until Ready, delete at teardown; list/watch for the leftover reaper.
  - apiGroups: [""]
    resources: [pods]
    verbs: [create, delete, get, list, watch]
  # Attach to the shell and read the in-pod audit file back. Exec over WebSocket is authorized as
  # "get" by older apiservers and as "create" by newer ones, so both are granted.
  - apiGroups: [""]
    resources: [pods/exec]
    verbs: [create, get]
  # The per-session kubeconfig Secret; list/watch for the reaper. It is created empty, the session
  # token is bound to it, then the kubeconfig is written into it (update), again on token rotation.
  - apiGroups: [""]
    resources: [secrets]
    verbs: [create, delete, get, list, watch, update]
  # Session tokens, and only for the tier ServiceAccounts below (not `default` or anything else
  # that may live in this namespace).
  - apiGroups: [""]
    resources: [serviceaccounts/token]
    verbs: [create]
    resourceNames:
      {{- range $cs.tiers }}
      - periscope-shell-{{ . }}
      {{- end }}
  # Explain a pod that does not start (image pull, quota, taints, admission denials).
  - apiGroups: ["", events.k8s.io]
    resources: [events]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ $fullname }}-shell-provisioner
  namespace: {{ $ns }}
  labels:
    {{- include "periscope-common.labels" $root | nindent 4 }}
    periscope.io/purpose: cluster-shell
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ $fullname }}-shell-provisioner
subjects:
  - kind: ServiceAccount
    name: {{ .provisioner.name }}
    namespace: {{ .provisioner.namespace }}
{{- range $tier := $cs.tiers }}
---
# The identity of session pods of tier {{ $tier }}. Its token only lets it impersonate the operator
# as that tier; it reads nothing itself, so a stolen token nets no more than the session had.
apiVersion: v1
kind: ServiceAccount
metadata:
  name: periscope-shell-{{ $tier }}
  namespace: {{ $ns }}
  labels:
    {{- include "periscope-common.labels" $root | nindent 4 }}
    periscope.io/purpose: cluster-shell
    periscope.io/tier: {{ $tier }}
automountServiceAccountToken: false
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: periscope-shell-impersonator-{{ $tier }}
  labels:
    {{- include "periscope-common.labels" $root | nindent 4 }}
    periscope.io/purpose: cluster-shell
    periscope.io/tier: {{ $tier }}
rules:
  # The user is the operator's OIDC subject, unknown in advance.
  - apiGroups: [""]
    resources: [users]
    verbs: [impersonate]
  # Exactly one group: this tier's. A token of this tier cannot reach another tier's rights.
  - apiGroups: [""]
    resources: [groups]
    verbs: [impersonate]
    resourceNames: ["periscope-tier:{{ $tier }}"]
  # The audit extras that join the apiserver audit log to Periscope's session audit.
  - apiGroups: [authentication.k8s.io]
    resources:
      - userextras/audit.periscope.io/session-id
      - userextras/audit.periscope.io/actor
    verbs: [impersonate]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: periscope-shell-impersonator-{{ $tier }}
  labels:
    {{- include "periscope-common.labels" $root | nindent 4 }}
    periscope.io/purpose: cluster-shell
    periscope.io/tier: {{ $tier }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: periscope-shell-impersonator-{{ $tier }}
subjects:
  - kind: ServiceAccount
    name: periscope-shell-{{ $tier }}
    namespace: {{ $ns }}
{{- end }}
{{- end }}
{{- end -}}
