{{/*
Each shell session runs as its own identity: a ServiceAccount, a ClusterRole that may impersonate
only that session's operator, tier group, session id and actor, and a ClusterRoleBinding, all
named periscope-shell-<session id> and created by the provisioner (design §10, docs/architecture.md).

Kubernetes' RBAC escalation check already lets the provisioner create only roles whose rules it
holds itself (the impersonator role: any user, the tier groups, the audit extras). This policy
narrows it to exactly the session shape, so the provisioner's token cannot mint a broader identity,
bind anything else, or delete ClusterRoles and bindings that are not shell objects:

- every ClusterRole, ClusterRoleBinding and ServiceAccount it writes (and every token it requests)
  is named periscope-shell-<uuid> and carries the shell labels of that session;
- a ClusterRole only impersonates one user (never system:), one periscope-tier: group, its own
  session id and one actor, one resourceName each, no aggregation;
- a ClusterRoleBinding only binds the ClusterRole of its own name to the ServiceAccount of its own
  name in the shell namespace.

e2e/cluster-ops/shell-rbac.ts holds the same spec for tests; e2e/charts/chart-render.spec.ts checks
they agree. Call with (dict "root" $ "provisioner" <subject>), the subject as in _cluster-shell.tpl.
*/}}
{{- define "periscope-common.shellIdentityPolicy.manifests" -}}
{{- $root := .root -}}
{{- $cs := $root.Values.clusterShell -}}
{{- if $cs.enabled }}
{{- $ns := $cs.namespace -}}
{{- $fullname := include "periscope-common.fullname" $root -}}
{{- $name := printf "%s-shell-identities" $fullname | trunc 63 | trimSuffix "-" -}}

---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: {{ $name }}
  labels:
    {{- include "periscope-common.labels" $root | nindent 4 }}
    periscope.io/purpose: cluster-shell
spec:
  # A policy the apiserver cannot evaluate denies: no session identity is better than a broad one.
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: [rbac.authorization.k8s.io]
        apiVersions: ["*"]
        operations: [CREATE, UPDATE, DELETE]
        resources: [clusterroles, clusterrolebindings]
      - apiGroups: [""]
        apiVersions: ["*"]
        operations: [CREATE, UPDATE, DELETE]
        resources: [serviceaccounts, serviceaccounts/token]
  # Only the provisioner's own requests; admins and everyone else are not matched.
  matchConditions:
    - name: provisioner
      expression: {{ include "periscope-common.subjectMatch" .provisioner | quote }}
  variables:
    - name: kind
      expression: >-
        request.resource.resource + (has(request.subResource) && request.subResource != '' ? '/' + request.subResource : '')
    - name: labels
      expression: >-
        (request.operation == 'DELETE' ? oldObject : object).metadata.?labels.orValue({})
    - name: sessionId
      expression: >-
        request.name.startsWith('periscope-shell-') ? request.name.substring(16) : ''
  validations:
    - expression: >-
        request.name.matches('^periscope-shell-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$')
      messageExpression: >-
        'the shell provisioner may only write ' + variables.kind + ' named periscope-shell-<session id>, not "' + request.name + '"'
      reason: Forbidden
    - expression: >-
        variables.kind == 'serviceaccounts/token' || (
        ('periscope.io/cluster-shell' in variables.labels && variables.labels['periscope.io/cluster-shell'] == 'true')
        && ('periscope.io/session-id' in variables.labels && variables.labels['periscope.io/session-id'] == variables.sessionId)
        && (variables.kind == 'serviceaccounts' || ('periscope.io/shell-namespace' in variables.labels && variables.labels['periscope.io/shell-namespace'] == '{{ $ns }}')))
      message: >-
        The shell provisioner may only write objects labelled periscope.io/cluster-shell=true and periscope.io/session-id=<the session id in the name>, and cluster-scoped ones also periscope.io/shell-namespace={{ $ns }}.
      reason: Forbidden
    - expression: >-
        variables.kind != 'clusterroles' || request.operation == 'DELETE' || (
        !has(object.aggregationRule) && size(object.?rules.orValue([])) <= 4 && object.?rules.orValue([]).all(r,
        r.verbs == ['impersonate']
        && size(r.?nonResourceURLs.orValue([])) == 0
        && size(r.?apiGroups.orValue([])) == 1 && size(r.?resources.orValue([])) == 1
        && size(r.?resourceNames.orValue([])) == 1 && (
        (r.apiGroups[0] == '' && r.resources[0] == 'users' && !r.resourceNames[0].startsWith('system:'))
        || (r.apiGroups[0] == '' && r.resources[0] == 'groups' && r.resourceNames[0].startsWith('periscope-tier:'))
        || (r.apiGroups[0] == 'authentication.k8s.io' && r.resources[0] == 'userextras/audit.periscope.io/session-id' && r.resourceNames[0] == variables.sessionId)
        || (r.apiGroups[0] == 'authentication.k8s.io' && r.resources[0] == 'userextras/audit.periscope.io/actor'))))
      message: >-
        A shell ClusterRole may only impersonate one user (not system:), one periscope-tier: group, its own session id and one actor: verb impersonate, exactly one resource and one resourceName per rule, no aggregation.
      reason: Forbidden
    - expression: >-
        variables.kind != 'clusterroles' || request.operation == 'DELETE'
        || ['users', 'groups', 'userextras/audit.periscope.io/session-id', 'userextras/audit.periscope.io/actor']
        .all(res, size(object.?rules.orValue([]).filter(r, r.resources[0] == res)) <= 1)
      message: >-
        A shell ClusterRole may hold at most one rule for each of users, groups and the two audit extras.
      reason: Forbidden
    - expression: >-
        variables.kind != 'clusterrolebindings' || request.operation == 'DELETE' || (
        object.roleRef.apiGroup == 'rbac.authorization.k8s.io' && object.roleRef.kind == 'ClusterRole'
        && object.roleRef.name == request.name && size(object.?subjects.orValue([])) == 1
        && object.subjects[0].kind == 'ServiceAccount' && object.subjects[0].name == request.name
        && object.subjects[0].?namespace.orValue('') == '{{ $ns }}')
      message: >-
        A shell ClusterRoleBinding may only bind the ClusterRole of its own name to the ServiceAccount of its own name in {{ $ns }}.
      reason: Forbidden
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: {{ $name }}
  labels:
    {{- include "periscope-common.labels" $root | nindent 4 }}
    periscope.io/purpose: cluster-shell
spec:
  policyName: {{ $name }}
  validationActions: [Deny]
{{- end }}
{{- end -}}
