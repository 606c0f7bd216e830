{{/*
Everything a cluster that hosts shell sessions needs, identical in both charts so the kubeconfig
inside a shell pod looks the same whichever side provisioned it (guide §1, §3, §8).

Call with (dict "root" $ "provisioner" (dict "name" <name> "namespace" <namespace> ["kind" <kind>])):
the provisioner is the identity that creates session Secrets, identities, tokens and Pods: the
server's ServiceAccount on its own cluster, the agent's on agent-managed clusters, or (the agent
chart's mode=rbac-only) the User, Group or ServiceAccount a server reaches a kubeconfig or eks
cluster as. kind defaults to ServiceAccount.

Each session gets its own identity, created by the provisioner and deleted at teardown (see
_shell-identity-policy.tpl): there are no per-tier shell ServiceAccounts any more.
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
  # Each session's own ServiceAccount periscope-shell-<session id>, and its bound token. The
  # names are not known in advance, so the admission policy (not resourceNames) narrows them.
  - apiGroups: [""]
    resources: [serviceaccounts]
    verbs: [create, delete, get, list, watch]
  - apiGroups: [""]
    resources: [serviceaccounts/token]
    verbs: [create]
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
  {{- include "periscope-common.subject" .provisioner | nindent 2 }}
---
# Each session's ClusterRole and ClusterRoleBinding periscope-shell-<session id>. RBAC's escalation
# check lets the provisioner create only roles whose rules it holds (it holds the impersonator
# role); the admission policy narrows them to exactly one operator, tier and session.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ $fullname }}-shell-identities
  labels:
    {{- include "periscope-common.labels" $root | nindent 4 }}
    periscope.io/purpose: cluster-shell
rules:
  - apiGroups: [rbac.authorization.k8s.io]
    resources: [clusterroles, clusterrolebindings]
    verbs: [create, delete, get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ $fullname }}-shell-identities
  labels:
    {{- include "periscope-common.labels" $root | nindent 4 }}
    periscope.io/purpose: cluster-shell
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ $fullname }}-shell-identities
subjects:
  {{- include "periscope-common.subject" .provisioner | nindent 2 }}
{{ include "periscope-common.shellIdentityPolicy.manifests" . }}
{{- end }}
{{- end -}}


{{/*
One RBAC subject, as a list item: (dict "kind" "ServiceAccount"|"User"|"Group" "name" <name>
"namespace" <namespace of a ServiceAccount>); kind defaults to ServiceAccount.
*/}}
{{- define "periscope-common.subject" -}}
{{- $kind := .kind | default "ServiceAccount" -}}
{{- if eq $kind "ServiceAccount" -}}
- kind: ServiceAccount
  name: {{ .name }}
  namespace: {{ .namespace }}
{{- else -}}
- apiGroup: rbac.authorization.k8s.io
  kind: {{ $kind }}
  name: {{ .name | quote }}
{{- end -}}
{{- end -}}

{{/*
A CEL condition of an admission policy: the request is made by that subject (a member of the
group, for a Group). The name is checked to hold no quote or backslash before it gets here.
*/}}
{{- define "periscope-common.subjectMatch" -}}
{{- $kind := .kind | default "ServiceAccount" -}}
{{- if eq $kind "ServiceAccount" -}}
{{- printf "request.userInfo.username == 'system:serviceaccount:%s:%s'" .namespace .name -}}
{{- else if eq $kind "User" -}}
{{- printf "request.userInfo.username == '%s'" .name -}}
{{- else -}}
{{- printf "'%s' in request.userInfo.groups" .name -}}
{{- end -}}
{{- end -}}
