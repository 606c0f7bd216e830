{{/* Server-only helpers; names, labels, images and RBAC come from the periscope-common library. */}}

{{/* "true" when the agent tunnel listener is exposed: asked for, or needed by an agent cluster. */}}
{{- define "periscope.agentTunnelEnabled" -}}
{{- $on := .Values.agentTunnel.enabled -}}
{{- range .Values.clusters -}}
{{- if eq (toString .backend) "agent" -}}{{- $on = true -}}{{- end -}}
{{- end -}}
{{- if $on -}}true{{- end -}}
{{- end -}}

{{/* "true" when some cluster is the one the server runs in (it then acts as the operator here). */}}
{{- define "periscope.inClusterBackend" -}}
{{- $on := false -}}
{{- range .Values.clusters -}}
{{- if eq (toString .backend) "in-cluster" -}}{{- $on = true -}}{{- end -}}
{{- end -}}
{{- if $on -}}true{{- end -}}
{{- end -}}

{{/* Names in the tunnel listener certificate: the host agents dial, then any extra names. */}}
{{- define "periscope.agentTunnelSANs" -}}
{{- $host := regexReplaceAll ":[0-9]+$" (urlParse .Values.agentTunnel.url).host "" -}}
{{- concat (list $host) (.Values.agentTunnel.extraSANs | default list) | uniq | join "," -}}
{{- end -}}

{{- define "periscope.publicURL" -}}
{{- if .Values.publicURL -}}
{{- .Values.publicURL -}}
{{- else if .Values.ingress.enabled -}}
{{- printf "%s://%s" (ternary "https" "http" .Values.ingress.tls.enabled) .Values.ingress.host -}}
{{- end -}}
{{- end -}}

{{/* Name of the Secret holding the OIDC client secret, and its key; empty when none is configured. */}}
{{- define "periscope.oidcSecretName" -}}
{{- if .Values.oidcClientSecret.existingSecret -}}
{{- .Values.oidcClientSecret.existingSecret -}}
{{- else if .Values.oidcClientSecret.value -}}
{{- printf "%s-oidc" (include "periscope-common.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "periscope.oidcSecretKey" -}}
{{- if .Values.oidcClientSecret.existingSecret -}}
{{- .Values.oidcClientSecret.existingSecretKey -}}
{{- else -}}
client-secret
{{- end -}}
{{- end -}}

{{/* The auth file: the auth values with empty settings left out, so the server applies its defaults. */}}
{{- define "periscope.authFile" -}}
{{- $auth := dict -}}
{{- $oidc := dict -}}
{{- range $k, $v := .Values.auth.oidc -}}
{{- if $v -}}{{- $_ := set $oidc $k $v -}}{{- end -}}
{{- end -}}
{{- if $oidc.issuer -}}{{- $_ := set $auth "oidc" $oidc -}}{{- end -}}
{{- $_ := set $auth "session" .Values.auth.session -}}
{{- $authz := dict -}}
{{- range $k, $v := .Values.auth.authorization -}}
{{- if or $v (kindIs "slice" $v) (kindIs "map" $v) -}}{{- $_ := set $authz $k $v -}}{{- end -}}
{{- end -}}
{{- $_ := set $auth "authorization" $authz -}}
{{- toYaml $auth -}}
{{- end -}}

{{- define "periscope.clustersFile" -}}
{{- toYaml (dict "clusters" (.Values.clusters | default list)) -}}
{{- end -}}

{{/*
Secret of one ha item (redis, database, sessionKey, replicaSecret): its own existingSecret, else
ha.existingSecret; empty when neither is set. Call with (dict "item" "redis" "root" $).
*/}}
{{- define "periscope.haSecret" -}}
{{- $ha := .root.Values.ha | default dict -}}
{{- $item := index $ha .item | default dict -}}
{{- $item.existingSecret | default $ha.existingSecret | default "" -}}
{{- end -}}

{{/*
Several replicas: what replicaCount > 1 (or Redis) needs, refused with the whole recipe at once —
the values to set and the command that makes the Secret.
*/}}
{{- define "periscope.validate.ha" -}}
{{- $replicas := .Values.replicaCount | int -}}
{{- $fullname := include "periscope-common.fullname" . -}}
{{- $redis := include "periscope.haSecret" (dict "item" "redis" "root" .) -}}
{{- $missing := list -}}
{{- if gt $replicas 1 -}}
{{- if not $redis -}}
{{- $missing = append $missing "ha.redis (PERISCOPE_REDIS_URL: caps, tickets, sign-ins and tunnel ownership shared by the replicas)" -}}
{{- end -}}
{{- if not (include "periscope.haSecret" (dict "item" "database" "root" .)) -}}
{{- $missing = append $missing "ha.database (PERISCOPE_DATABASE_URL: one PostgreSQL audit store for every replica)" -}}
{{- end -}}
{{- end -}}
{{- if or (gt $replicas 1) $redis -}}
{{- if not (include "periscope.haSecret" (dict "item" "sessionKey" "root" .)) -}}
{{- $missing = append $missing "ha.sessionKey (PERISCOPE_SESSION_KEY: every replica seals sign-ins with the same key)" -}}
{{- end -}}
{{- if not (include "periscope.haSecret" (dict "item" "replicaSecret" "root" .)) -}}
{{- $missing = append $missing "ha.replicaSecret (PERISCOPE_REPLICA_SECRET: authenticates requests forwarded between replicas)" -}}
{{- end -}}
{{- end -}}
{{- if gt $replicas 1 -}}
{{- if and .Values.persistence.enabled (ne (toString .Values.persistence.accessMode) "ReadWriteMany") -}}
{{- $missing = append $missing (printf "persistence.enabled=false (a %s claim mounts on one node only; the audit lives in PostgreSQL)" (toString .Values.persistence.accessMode)) -}}
{{- end -}}
{{- if and (include "periscope.agentTunnelEnabled" .) (not .Values.agentTunnel.caSecret) -}}
{{- $missing = append $missing "agentTunnel.caSecret (e.g. periscope-agent-ca: the agent CA every replica verifies agents with, a Secret the server creates)" -}}
{{- end -}}
{{- end -}}
{{- $min := .Values.podDisruptionBudget.minAvailable -}}
{{- if and .Values.podDisruptionBudget.enabled (or (kindIs "float64" $min) (kindIs "int64" $min) (kindIs "int" $min)) (ge (int $min) $replicas) -}}
{{- fail (printf "podDisruptionBudget.minAvailable=%d with replicaCount=%d lets no replica be evicted, so no node can be drained. Set podDisruptionBudget.minAvailable below replicaCount, or leave it empty and use maxUnavailable: 1." (int $min) $replicas) -}}
{{- end -}}
{{- if $missing -}}
{{- $why := ternary (printf "replicaCount=%d" $replicas) "ha.redis is set, which" (gt $replicas 1) -}}
{{- $recipe := "" -}}
{{- if regexMatch "(^|\\|)ha\\." (join "|" $missing) -}}
{{- $recipe = printf `
Create one Secret with every key (use your Redis and PostgreSQL addresses and passwords):
  kubectl -n %s create secret generic %s-ha \
    --from-literal=redis-url='rediss://:<password>@redis.example.com:6379/0' \
    --from-literal=database-url='postgres://periscope:<password>@db.example.com:5432/periscope?sslmode=verify-full' \
    --from-literal=session-key="$(openssl rand -base64 32)" \
    --from-literal=replica-secret="$(openssl rand -base64 48)"
then set ha.existingSecret=%s-ha (or ha.<item>.existingSecret and existingSecretKey one by one).` .Release.Namespace $fullname $fullname -}}
{{- end -}}
{{- fail (printf "%s needs values that are not set:\n  - %s%s\nSee docs/helm-charts.md, \"Several replicas\"." $why (join "\n  - " $missing) $recipe) -}}
{{- end -}}
{{- end -}}

{{/* Cross-field rules of the server chart, each failing with the fix. */}}
{{- define "periscope.validate" -}}
{{- $authz := .Values.auth.authorization -}}
{{- if and .Values.clusterShell.enabled (ne (toString $authz.mode) "tier") -}}
{{- fail (printf "clusterShell.enabled=true requires auth.authorization.mode=tier (got %s). Set auth.authorization.mode: tier and map groups under auth.authorization.groupTiers, or set clusterShell.enabled=false." (toString $authz.mode)) -}}
{{- end -}}
{{- include "periscope-common.validate.clusterShell" . -}}
{{- include "periscope.validate.ha" . -}}
{{- include "periscope-common.validate.auth" . -}}
{{- include "periscope-common.validate.protectedNamespaces" . -}}
{{- include "periscope-common.validate.clusterRBAC" . -}}
{{- range $group, $tier := $authz.groupTiers -}}
{{- include "periscope-common.validate.tier" (dict "value" $tier "path" (printf "auth.authorization.groupTiers[%q]" $group)) -}}
{{- end -}}
{{- with $authz.defaultTier -}}
{{- include "periscope-common.validate.tier" (dict "value" . "path" "auth.authorization.defaultTier") -}}
{{- end -}}
{{- if and .Values.clusterRBAC.enabled (not .Values.clusterRBAC.adminTier.enabled) (eq (toString $authz.mode) "tier") -}}
{{- range $group, $tier := $authz.groupTiers -}}
{{- if eq (toString $tier) "admin" -}}
{{- fail (printf "auth.authorization.groupTiers maps %q to the admin tier, but clusterRBAC.adminTier.enabled=false, so admins would be denied everything on this cluster. Set clusterRBAC.adminTier.enabled=true (binds periscope-tier:admin to cluster-admin) or map the group to a lower tier." $group) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if .Values.auth.oidc.clientSecret -}}
{{- fail "auth.oidc.clientSecret would be stored in a ConfigMap. Remove it and set oidcClientSecret.existingSecret (an existing Secret) or oidcClientSecret.value instead." -}}
{{- end -}}
{{- if hasKey .Values.auth "dev" -}}
{{- fail "auth.dev is not supported by the chart: it always runs the server in oidc mode (dev mode only binds to loopback). Remove auth.dev and configure auth.oidc." -}}
{{- end -}}
{{- if and .Values.oidcClientSecret.existingSecret .Values.oidcClientSecret.value -}}
{{- fail "Set only one of oidcClientSecret.existingSecret and oidcClientSecret.value (prefer existingSecret)." -}}
{{- end -}}
{{- $names := list -}}
{{- range $i, $c := .Values.clusters -}}
{{- include "periscope-common.validate.dnsLabel" (dict "value" $c.name "path" (printf "clusters[%d].name" $i) "example" "prod-eu") -}}
{{- if has $c.name $names -}}
{{- fail (printf "clusters[%d].name=%q is listed twice. Give every cluster a unique name." $i $c.name) -}}
{{- end -}}
{{- $names = append $names $c.name -}}
{{- end -}}
{{- if include "periscope.agentTunnelEnabled" . -}}
{{- if not .Values.agentTunnel.url -}}
{{- fail "The agent tunnel is exposed (agentTunnel.enabled=true or a cluster with backend: agent) but agentTunnel.url is empty. Set agentTunnel.url to the https:// address agents dial, e.g. https://periscope-tunnel.example.com:8443 (a DNS name for the agent-tunnel Service's load balancer)." -}}
{{- end -}}
{{- if not (regexMatch "^https://[^/\\s]+/?$" .Values.agentTunnel.url) -}}
{{- fail (printf "agentTunnel.url=%q must be an https:// origin without a path, e.g. https://periscope-tunnel.example.com:8443." .Values.agentTunnel.url) -}}
{{- end -}}
{{- if and (not .Values.persistence.enabled) (not .Values.agentTunnel.caSecret) -}}
{{- fail "The agent tunnel is exposed but persistence.enabled=false and agentTunnel.caSecret is empty, so the agent CA would be lost on every restart and every agent would have to register again. Set agentTunnel.caSecret: periscope-agent-ca (a Secret the server creates), or persistence.enabled=true." -}}
{{- end -}}
{{- end -}}
{{- if and .Values.ingress.enabled (not .Values.ingress.host) -}}
{{- fail "ingress.enabled=true requires ingress.host. Set ingress.host: periscope.example.com, or set ingress.enabled=false." -}}
{{- end -}}
{{- if and .Values.ingress.enabled .Values.ingress.tls.enabled (not .Values.ingress.tls.secretName) -}}
{{- fail "ingress.tls.enabled=true requires ingress.tls.secretName. Set it to the Secret holding the certificate for ingress.host." -}}
{{- end -}}
{{- end -}}

{{/* clusterShell.modeByTier as PERISCOPE_CLUSTER_SHELL_MODE_BY_TIER: tier=mode pairs, sorted by tier. */}}
{{- define "periscope.modeByTier" -}}
{{- $pairs := list -}}
{{- range $tier, $mode := . -}}
{{- $pairs = append $pairs (printf "%s=%s" $tier $mode) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}
