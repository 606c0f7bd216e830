{{/*
Periscope's own namespaces are admin-only (design §10). RBAC is additive, so a cluster-wide tier
binding also holds in the namespace of the agent or server and in the shell namespace, where a
pod exec into a live admin shell or the agent, a session Secret or a token for a shell
ServiceAccount would hand out more than the tier. Two mechanisms close that:

- a ValidatingAdmissionPolicy denies every CREATE, UPDATE, DELETE and CONNECT (exec, attach,
  port-forward, ephemeral containers, evictions, token requests, anything) in those namespaces to
  a request that carries a periscope-tier:<tier> group other than periscope-tier:admin;
- `edit` (write, maintain) is bound per namespace by the tier binder of the agent or server,
  never in those namespaces, because admission does not see reads or impersonation.

Call with the chart's root context.
*/}}

{{/*
The protected namespaces, space-separated, unique: the release namespace (not in the agent
chart's mode=rbac-only), the shell namespace while the cluster shell is on, and protectedNamespaces.
*/}}
{{- define "periscope-common.protectedNamespaces" -}}
{{- $list := list -}}
{{- /* The agent chart's rbac-only mode installs no Periscope workload: its release namespace is not Periscope's. */ -}}
{{- if ne (toString (.Values.mode | default "")) "rbac-only" -}}
{{- $list = append $list .Release.Namespace -}}
{{- end -}}
{{- if .Values.clusterShell.enabled -}}
{{- $list = append $list (toString .Values.clusterShell.namespace) -}}
{{- end -}}
{{- range .Values.protectedNamespaces | default list -}}
{{- $list = append $list (toString .) -}}
{{- end -}}
{{- $list | uniq | join " " -}}
{{- end -}}

{{/* The tier groups that are bound to `edit` per namespace by the tier binder. */}}
{{- define "periscope-common.tierBinderGroups" -}}
periscope-tier:write periscope-tier:maintain
{{- end -}}

{{- define "periscope-common.validate.protectedNamespaces" -}}
{{- range $i, $ns := .Values.protectedNamespaces | default list -}}
{{- include "periscope-common.validate.dnsLabel" (dict "value" $ns "path" (printf "protectedNamespaces[%d]" $i) "example" "cert-manager") -}}
{{- end -}}
{{- end -}}

{{/*
The admission policy, on whenever the chart gives tiers rights (clusterRBAC.enabled) or runs
sessions here (clusterShell.enabled). Named after the release, so a server and an agent in one
cluster each protect their own namespaces.
*/}}
{{- define "periscope-common.protectedNamespaces.manifests" -}}
{{- $root := . -}}
{{- if or $root.Values.clusterRBAC.enabled $root.Values.clusterShell.enabled }}
{{- $fullname := include "periscope-common.fullname" $root }}
{{- $name := printf "%s-protected-namespaces" $fullname | trunc 63 | trimSuffix "-" }}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: {{ $name }}
  labels:
    {{- include "periscope-common.labels" $root | nindent 4 }}
    periscope.io/purpose: namespace-protection
spec:
  # A policy the apiserver cannot evaluate denies: the namespaces stay closed.
  failurePolicy: Fail
  matchConstraints:
    namespaceSelector:
      matchExpressions:
        - key: kubernetes.io/metadata.name
          operator: In
          values:
            {{- range splitList " " (include "periscope-common.protectedNamespaces" $root) }}
            - {{ . | quote }}
            {{- end }}
    resourceRules:
      # Every namespaced resource and subresource: pods/exec, pods/attach, pods/portforward and
      # pods/ephemeralcontainers (CONNECT, UPDATE), pods/eviction, serviceaccounts/token, …
      - apiGroups: ["*"]
        apiVersions: ["*"]
        operations: [CREATE, UPDATE, DELETE, CONNECT]
        resources: ["*/*"]
        scope: Namespaced
  # Only requests made as an operator below admin (Periscope impersonates exactly one
  # periscope-tier:<tier> group); the provisioner, the agent and everyone else are not matched.
  matchConditions:
    - name: periscope-tier-below-admin
      expression: >-
        request.userInfo.groups.exists(g, g.startsWith('periscope-tier:') && g != 'periscope-tier:admin')
  validations:
    - expression: "false"
      reason: Forbidden
      message: >-
        This namespace belongs to Periscope (its agent, server or shell sessions); only the admin
        tier (periscope-tier:admin) may change, exec into or create anything here. Use a namespace
        of your own workloads, or ask a Periscope admin.
      messageExpression: >-
        'namespace ' + request.namespace + ' belongs to Periscope (its agent, server or shell sessions): only the admin tier (periscope-tier:admin) may change, exec into or create anything here ('
        + request.operation + ' ' + request.resource.resource
        + (has(request.subResource) && request.subResource != '' ? '/' + request.subResource : '')
        + ' refused). Use a namespace of your own workloads, or ask a Periscope admin.'
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: {{ $name }}
  labels:
    {{- include "periscope-common.labels" $root | nindent 4 }}
    periscope.io/purpose: namespace-protection
spec:
  policyName: {{ $name }}
  validationActions: [Deny]
{{- end }}
{{- end -}}

{{/*
What the tier binder (agent, or the server on its own cluster) needs with clusterRBAC.enabled:
read namespaces and admission policies, manage RoleBindings, and bind exactly the ClusterRole
`edit`. A second admission
policy narrows those rights to what the binder does, so its token can create no other binding:
a RoleBinding labelled periscope.io/purpose=tier-rbac, to ClusterRole edit, for one tier group,
outside the protected namespaces; and it deletes only such labelled bindings.

Call with (dict "root" $ "subject" (dict "name" <ServiceAccount> "namespace" <namespace>)).
*/}}
{{- define "periscope-common.tierBinder.manifests" -}}
{{- $root := .root -}}
{{- if $root.Values.clusterRBAC.enabled }}
{{- $fullname := include "periscope-common.fullname" $root }}
{{- $name := printf "%s-tier-binder" $fullname | trunc 63 | trimSuffix "-" }}
{{- $user := printf "system:serviceaccount:%s:%s" .subject.namespace .subject.name }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ $name }}
  labels:
    {{- include "periscope-common.labels" $root | nindent 4 }}
    periscope.io/purpose: tier-rbac
rules:
  - apiGroups: [""]
    resources: [namespaces]
    verbs: [get, list, watch]
  - apiGroups: [rbac.authorization.k8s.io]
    resources: [rolebindings]
    verbs: [get, list, watch, create, delete]
  # Bind `edit` without holding it (RBAC's escalation check); no other role.
  - apiGroups: [rbac.authorization.k8s.io]
    resources: [clusterroles]
    verbs: [bind]
    resourceNames: [edit]
  # The namespaces other Periscope releases protect (their namespace-protection policies).
  - apiGroups: [admissionregistration.k8s.io]
    resources: [validatingadmissionpolicies]
    verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ $name }}
  labels:
    {{- include "periscope-common.labels" $root | nindent 4 }}
    periscope.io/purpose: tier-rbac
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ $name }}
subjects:
  - kind: ServiceAccount
    name: {{ .subject.name }}
    namespace: {{ .subject.namespace }}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: {{ $name }}
  labels:
    {{- include "periscope-common.labels" $root | nindent 4 }}
    periscope.io/purpose: tier-rbac
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: [rbac.authorization.k8s.io]
        apiVersions: ["*"]
        operations: [CREATE, UPDATE, DELETE]
        resources: [rolebindings]
  matchConditions:
    - name: the-tier-binder
      expression: {{ printf "request.userInfo.username == '%s'" $user | quote }}
  variables:
    - name: tierBinding
      expression: >-
        has(object.metadata.labels) && 'periscope.io/purpose' in object.metadata.labels
        && object.metadata.labels['periscope.io/purpose'] == 'tier-rbac'
        && object.roleRef.kind == 'ClusterRole' && object.roleRef.name == 'edit'
        && has(object.subjects) && size(object.subjects) == 1
        && object.subjects[0].kind == 'Group'
        && object.subjects[0].name in {{ splitList " " (include "periscope-common.tierBinderGroups" $root) | toJson }}
  validations:
    - expression: "request.operation == 'DELETE' || variables.tierBinding"
      reason: Forbidden
      message: >-
        The tier binder may only create RoleBindings labelled periscope.io/purpose=tier-rbac that
        bind ClusterRole edit to one group periscope-tier:write or periscope-tier:maintain.
    - expression: >-
        request.operation == 'DELETE' || !(request.namespace in {{ splitList " " (include "periscope-common.protectedNamespaces" $root) | toJson }})
      reason: Forbidden
      message: The tier binder may not bind edit in a namespace Periscope protects.
    - expression: >-
        request.operation != 'DELETE'
        || (has(oldObject.metadata.labels) && 'periscope.io/purpose' in oldObject.metadata.labels
        && oldObject.metadata.labels['periscope.io/purpose'] == 'tier-rbac')
      reason: Forbidden
      message: The tier binder may only delete RoleBindings labelled periscope.io/purpose=tier-rbac.
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: {{ $name }}
  labels:
    {{- include "periscope-common.labels" $root | nindent 4 }}
    periscope.io/purpose: tier-rbac
spec:
  policyName: {{ $name }}
  validationActions: [Deny]
{{- end }}
{{- end -}}
