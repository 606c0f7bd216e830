{{/*
Tier RBAC: what the group "periscope-tier:<tier>" may do on a cluster. Periscope impersonates the
operator with exactly one such group (authorization mode "tier"), so these bindings are the whole
of an operator's rights on the cluster. Call with the chart's root context.

  read     → view
  triage   → view + periscope-triage (exec, port-forward, evict/delete pods, scale, restart)
  write    → view + edit in every namespace but the protected ones
  maintain → write + periscope-maintain (read cluster-scoped objects and RBAC, never write RBAC)
  admin    → cluster-admin, only with clusterRBAC.adminTier.enabled

`edit` is not bound cluster-wide: it reads Secrets, mints ServiceAccount tokens and impersonates
ServiceAccounts, which admission cannot refuse. The tier binder of the agent (or server) keeps
RoleBindings periscope-tier-write and periscope-tier-maintain-edit to `edit` in every namespace
except the protected ones (_protected-namespaces.tpl); the admission policy there refuses every
write, exec and token request of the tiers below admin, including what periscope-triage allows.
*/}}
{{- define "periscope-common.clusterRBAC.manifests" -}}
{{- $root := . -}}
{{- $rbac := .Values.clusterRBAC -}}
{{- if $rbac.enabled }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: periscope-triage
  labels:
    {{- include "periscope-common.labels" $root | nindent 4 }}
    periscope.io/purpose: tier-rbac
rules:
  # Exec and port-forward (WebSocket requests are authorized as "get" by older apiservers).
  - apiGroups: [""]
    resources: [pods/exec, pods/portforward]
    verbs: [create, get]
  # Kill or evict a stuck pod.
  - apiGroups: [""]
    resources: [pods]
    verbs: [delete]
  - apiGroups: [""]
    resources: [pods/eviction]
    verbs: [create]
  # Scale, and restart (kubectl rollout restart patches the pod template).
  - apiGroups: [apps]
    resources: [deployments/scale, statefulsets/scale, replicasets/scale]
    verbs: [get, patch, update]
  - apiGroups: [apps]
    resources: [deployments, statefulsets, daemonsets]
    verbs: [patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: periscope-maintain
  labels:
    {{- include "periscope-common.labels" $root | nindent 4 }}
    periscope.io/purpose: tier-rbac
rules:
  # Read what `edit` does not show: cluster-scoped objects and RBAC. Listed by name rather than
  # "*", because "*" also matches subresources such as nodes/proxy and pods/exec.
  - apiGroups: [""]
    resources: [nodes, namespaces, persistentvolumes]
    verbs: [get, list, watch]
  - apiGroups: [rbac.authorization.k8s.io]
    resources: [roles, rolebindings, clusterroles, clusterrolebindings]
    verbs: [get, list, watch]
  - apiGroups: [storage.k8s.io]
    resources: [storageclasses, csidrivers, csinodes, volumeattachments]
    verbs: [get, list, watch]
  - apiGroups: [apiextensions.k8s.io]
    resources: [customresourcedefinitions]
    verbs: [get, list, watch]
  - apiGroups: [admissionregistration.k8s.io]
    resources:
      - mutatingwebhookconfigurations
      - validatingwebhookconfigurations
      - validatingadmissionpolicies
      - validatingadmissionpolicybindings
    verbs: [get, list, watch]
  - apiGroups: [apiregistration.k8s.io]
    resources: [apiservices]
    verbs: [get, list, watch]
  - apiGroups: [scheduling.k8s.io]
    resources: [priorityclasses]
    verbs: [get, list, watch]
  - apiGroups: [networking.k8s.io]
    resources: [ingressclasses]
    verbs: [get, list, watch]
  - apiGroups: [node.k8s.io]
    resources: [runtimeclasses]
    verbs: [get, list, watch]
  - apiGroups: [certificates.k8s.io]
    resources: [certificatesigningrequests]
    verbs: [get, list, watch]
  - apiGroups: [metrics.k8s.io]
    resources: [nodes, pods]
    verbs: [get, list, watch]
{{- /* name suffix, ClusterRole, tier; triage and maintain get two bindings each. `edit` of write and maintain is bound per namespace by the tier binder. */ -}}
{{- $bindings := list
  (dict "name" "read" "role" "view" "tier" "read")
  (dict "name" "triage-view" "role" "view" "tier" "triage")
  (dict "name" "triage" "role" "periscope-triage" "tier" "triage")
  (dict "name" "write-view" "role" "view" "tier" "write")
  (dict "name" "maintain-view" "role" "view" "tier" "maintain")
  (dict "name" "maintain" "role" "periscope-maintain" "tier" "maintain")
}}
{{- if $rbac.adminTier.enabled }}
{{- $bindings = append $bindings (dict "name" "admin" "role" $rbac.adminTier.clusterRoleName "tier" "admin") }}
{{- end }}
{{- range $bindings }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: periscope-tier-{{ .name }}
  labels:
    {{- include "periscope-common.labels" $root | nindent 4 }}
    periscope.io/purpose: tier-rbac
    periscope.io/tier: {{ .tier }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ .role }}
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: Group
    name: periscope-tier:{{ .tier }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
Lets a ServiceAccount act as the operator: impersonate any user (the OIDC subject), the tier groups
(plus impersonation.extraGroups, the prefixed IdP groups of raw mode), and the two audit user-extras.
Used for the agent, for the server when it serves an in-cluster backend, and (the agent chart's
mode=rbac-only) for the identity a server reaches a kubeconfig or eks cluster as. Nothing else:
the operator's own RBAC decides what each request may do.

Call with (dict "root" $ "subject" <subject>), the subject as in _cluster-shell.tpl.
*/}}
{{- define "periscope-common.impersonator.manifests" -}}
{{- $root := .root -}}
{{- $imp := $root.Values.impersonation -}}
{{- $fullname := include "periscope-common.fullname" $root -}}
{{- $groups := list -}}
{{- range splitList " " (include "periscope-common.tierNames" $root) -}}
{{- $groups = append $groups (printf "periscope-tier:%s" .) -}}
{{- end -}}
{{- range $i, $g := ($imp.extraGroups | default list) -}}
{{- if hasPrefix "system:" (toString $g) -}}
{{- fail (printf "impersonation.extraGroups[%d]=%q is a system group; impersonating it would hand out Kubernetes' own rights (system:masters is cluster-admin). List only your prefixed IdP groups (e.g. \"periscope:sre\") or remove the entry." $i (toString $g)) -}}
{{- end -}}
{{- $groups = append $groups (toString $g) -}}
{{- end -}}
{{- $groups = uniq $groups -}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ $fullname }}-impersonator
  labels:
    {{- include "periscope-common.labels" $root | nindent 4 }}
    periscope.io/purpose: impersonation
rules:
  - apiGroups: [""]
    resources: [users]
    verbs: [impersonate]
  - apiGroups: [""]
    resources: [groups]
    verbs: [impersonate]
    # Named groups only: impersonating system:masters or any other group is refused.
    resourceNames:
      {{- range $groups }}
      - {{ . | quote }}
      {{- end }}
  - apiGroups: [authentication.k8s.io]
    resources:
      - userextras/audit.periscope.io/session-id
      - userextras/audit.periscope.io/actor
    verbs: [impersonate]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ $fullname }}-impersonator
  labels:
    {{- include "periscope-common.labels" $root | nindent 4 }}
    periscope.io/purpose: impersonation
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ $fullname }}-impersonator
subjects:
  {{- include "periscope-common.subject" .subject | nindent 2 }}
{{- end -}}
