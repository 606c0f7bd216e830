{{/*
Fail-fast checks. values.schema.json handles types and ranges; these handle what a schema cannot
say well: cross-field rules, and messages that tell the operator what to change.
*/}}

{{/* Tier names, lowest rank first. The group of a tier is "periscope-tier:<tier>". */}}
{{- define "periscope-common.tierNames" -}}
read triage write maintain admin
{{- end -}}

{{/*
Fails unless .value is a DNS label (what the server and agent accept for namespaces and cluster
names). Call with (dict "value" v "path" "clusterShell.namespace" "example" "periscope-system").
*/}}
{{- define "periscope-common.validate.dnsLabel" -}}
{{- $v := toString .value -}}
{{- if or (gt (len $v) 63) (not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $v)) -}}
{{- fail (printf "%s=%q is not a DNS label. Use 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit (e.g. %s: %s)." .path $v .path (.example | default "periscope-system")) -}}
{{- end -}}
{{- end -}}

{{/* Fails unless .value is a tier name. Call with (dict "value" v "path" "auth.authorization.defaultTier"). */}}
{{- define "periscope-common.validate.tier" -}}
{{- $tiers := splitList " " (include "periscope-common.tierNames" .) -}}
{{- if not (has (toString .value) $tiers) -}}
{{- fail (printf "%s: unknown tier %q. Tiers are %s; change %s to one of them." .path (toString .value) (join ", " $tiers) .path) -}}
{{- end -}}
{{- end -}}

{{/*
The clusterShell block of either chart. Checked whether or not the shell is enabled: the server
and the agent read these variables at start-up either way and refuse to start on a bad value.
*/}}
{{- define "periscope-common.validate.clusterShell" -}}
{{- $cs := .Values.clusterShell -}}
{{- $tiers := $cs.tiers | default list -}}
{{- if eq (len $tiers) 0 -}}
{{- fail "clusterShell.tiers is empty. List the tiers that may open a cluster shell, e.g. clusterShell.tiers: [admin] (read, triage, write, maintain, admin)." -}}
{{- end -}}
{{- range $i, $t := $tiers -}}
{{- include "periscope-common.validate.tier" (dict "value" $t "path" (printf "clusterShell.tiers[%d]" $i)) -}}
{{- end -}}
{{- if ne (len $tiers) (len (uniq $tiers)) -}}
{{- fail (printf "clusterShell.tiers lists a tier twice (%s). List each tier once." (join ", " $tiers)) -}}
{{- end -}}
{{- include "periscope-common.validate.dnsLabel" (dict "value" $cs.namespace "path" "clusterShell.namespace") -}}
{{- end -}}

{{/*
clusterRBAC: the admin tier's binding is part of the tier RBAC, so it is installed only with it;
alone, adminTier.enabled would silently install nothing and every admin kubectl call would be denied.
*/}}
{{- define "periscope-common.validate.clusterRBAC" -}}
{{- $rbac := .Values.clusterRBAC | default dict -}}
{{- if and ($rbac.adminTier | default dict).enabled (not $rbac.enabled) -}}
{{- fail "clusterRBAC.adminTier.enabled=true needs clusterRBAC.enabled=true: the admin tier's binding is installed with the tier RBAC, so alone it installs nothing and the admin tier is denied everything. Set clusterRBAC.enabled=true as well (it also binds read, triage, write and maintain), or drop clusterRBAC.adminTier.enabled and bind periscope-tier:admin yourself." -}}
{{- end -}}
{{- end -}}

{{/*
The server chart's authorization block: what the server refuses at start-up, refused at install
instead. Kubernetes reserves names that start with "system:"; Periscope never impersonates one.
*/}}
{{- define "periscope-common.validate.auth" -}}
{{- $authz := .Values.auth.authorization -}}
{{- $prefix := lower (toString $authz.groupPrefix) -}}
{{- if or (eq $prefix "") (hasPrefix "system:" $prefix) (hasPrefix $prefix "system:") -}}
{{- fail (printf "auth.authorization.groupPrefix=%q would let an IdP group become a Kubernetes system group (\"system:masters\" is cluster-admin). Use a prefix that is not empty, does not start with \"system:\" and is not the start of it, e.g. groupPrefix: \"periscope:\" (the default)." (toString $authz.groupPrefix)) -}}
{{- end -}}
{{- range $key := list "allowedGroups" "auditAdminGroups" -}}
{{- range $i, $g := (index $authz $key | default list) -}}
{{- if hasPrefix "system:" (lower (toString $g)) -}}
{{- fail (printf "auth.authorization.%s[%d]=%q is a Kubernetes system group. The server drops IdP groups that start with \"system:\" at sign-in, so it could never match; remove it." $key $i (toString $g)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $g, $_ := ($authz.groupTiers | default dict) -}}
{{- if hasPrefix "system:" (lower $g) -}}
{{- fail (printf "auth.authorization.groupTiers[%q] maps a Kubernetes system group. The server drops IdP groups that start with \"system:\" at sign-in, so it could never match; remove it." $g) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.auth.oidc.issuer (eq (toString $authz.mode) "shared") (eq (len ($authz.allowedGroups | default list)) 0) (not $authz.allowAnyUser) -}}
{{- fail "auth.authorization.mode=shared with an empty auth.authorization.allowedGroups lets every account of the OpenID provider act on every cluster as the server's own identity. List the IdP groups allowed to sign in under auth.authorization.allowedGroups, or use auth.authorization.mode: tier, or set auth.authorization.allowAnyUser=true to accept this on purpose." -}}
{{- end -}}
{{- end -}}
