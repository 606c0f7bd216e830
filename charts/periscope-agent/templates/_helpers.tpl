{{/* Agent-only helpers; names, labels, images and RBAC come from the periscope-common library. */}}

{{- define "periscope-agent.tokenSecretName" -}}
{{- if .Values.agent.registrationToken.existingSecret -}}
{{- .Values.agent.registrationToken.existingSecret -}}
{{- else if .Values.agent.registrationToken.value -}}
{{- printf "%s-registration" (include "periscope-common.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "periscope-agent.tokenSecretKey" -}}
{{- if .Values.agent.registrationToken.existingSecret -}}
{{- .Values.agent.registrationToken.existingSecretKey -}}
{{- else -}}
token
{{- end -}}
{{- end -}}

{{/*
The identity that provisions shell sessions and impersonates operators here, as JSON: the agent's
ServiceAccount, or with mode=rbac-only provisioner.subject (the server's identity on this cluster).
*/}}
{{- define "periscope-agent.provisioner" -}}
{{- if eq .Values.mode "rbac-only" -}}
{{- $s := .Values.provisioner.subject -}}
{{- dict "kind" $s.kind "name" $s.name "namespace" ($s.namespace | default "") | toJson -}}
{{- else -}}
{{- dict "kind" "ServiceAccount" "name" (include "periscope-common.serviceAccountName" .) "namespace" .Release.Namespace | toJson -}}
{{- end -}}
{{- end -}}

{{/* mode=rbac-only: only the target-side RBAC, for provisioner.subject. */}}
{{- define "periscope-agent.validate.rbacOnly" -}}
{{- $s := .Values.provisioner.subject -}}
{{- $name := toString $s.name -}}
{{- if not $name -}}
{{- fail "mode=rbac-only needs provisioner.subject.name: the identity the server reaches this cluster as, exactly as the apiserver reports it (run kubectl auth whoami with the server's kubeconfig; for eks, the username its access entry or aws-auth maps the server's IAM role to), e.g. --set provisioner.subject.kind=User --set provisioner.subject.name=periscope-server." -}}
{{- end -}}
{{- if not (regexMatch "^[^'\"\\\\\\s]+$" $name) -}}
{{- fail (printf "provisioner.subject.name=%q may not hold quotes, backslashes or spaces. Use the name exactly as kubectl auth whoami reports it." $name) -}}
{{- end -}}
{{- if eq $s.kind "ServiceAccount" -}}
{{- include "periscope-common.validate.dnsLabel" (dict "value" $s.namespace "path" "provisioner.subject.namespace" "example" "periscope") -}}
{{- if hasPrefix "system:" $name -}}
{{- fail (printf "provisioner.subject.name=%q: with kind ServiceAccount give the ServiceAccount's own name and its namespace in provisioner.subject.namespace, not system:serviceaccount:<namespace>:<name>." $name) -}}
{{- end -}}
{{- else if hasPrefix "system:" $name -}}
{{- fail (printf "provisioner.subject.name=%q is a Kubernetes system %s; binding the shell provisioner to it would hand its rights to every such identity. Name the server's own user (or a group only it is in); for a ServiceAccount use kind ServiceAccount with its name and namespace." $name (lower $s.kind)) -}}
{{- end -}}
{{- if not (or .Values.clusterShell.enabled .Values.clusterRBAC.enabled) -}}
{{- fail "mode=rbac-only with clusterShell.enabled=false and clusterRBAC.enabled=false installs nothing but the impersonator role. Set clusterShell.enabled=true (the cluster shell's RBAC) and/or clusterRBAC.enabled=true (the tier RBAC)." -}}
{{- end -}}
{{- end -}}

{{/* Cross-field rules of the agent chart, each failing with the fix. */}}
{{- define "periscope-agent.validate" -}}
{{- if eq .Values.mode "rbac-only" -}}
{{- include "periscope-agent.validate.rbacOnly" . -}}
{{- else -}}
{{- include "periscope-agent.validate.agent" . -}}
{{- end -}}
{{- include "periscope-common.validate.clusterShell" . -}}
{{- include "periscope-common.validate.protectedNamespaces" . -}}
{{- include "periscope-common.validate.clusterRBAC" . -}}
{{- end -}}

{{/* mode=agent: the agent's own settings. */}}
{{- define "periscope-agent.validate.agent" -}}
{{- if .Values.provisioner.subject.name -}}
{{- fail "provisioner.subject is for mode=rbac-only; with mode=agent the agent's own ServiceAccount is the provisioner. Remove provisioner.subject, or set mode=rbac-only to install only the RBAC for a server that reaches this cluster directly." -}}
{{- end -}}
{{- $a := .Values.agent -}}
{{- if not $a.serverURL -}}
{{- fail "agent.serverURL is required: the server's agent tunnel address (see the NOTES of the periscope release), e.g. agent.serverURL=https://periscope-tunnel.example.com:8443." -}}
{{- end -}}
{{- if not (regexMatch "^(https|wss)://[^\\s/]+(/\\S*)?$" $a.serverURL) -}}
{{- fail (printf "agent.serverURL=%q must be an https:// (or wss://) URL of the server's agent tunnel, e.g. https://periscope-tunnel.example.com:8443." $a.serverURL) -}}
{{- end -}}
{{- if and $a.registrationURL (not (regexMatch "^https?://\\S+$" $a.registrationURL)) -}}
{{- fail (printf "agent.registrationURL=%q must be the http(s):// base URL of the server API, e.g. https://periscope.example.com, or empty to use agent.serverURL." $a.registrationURL) -}}
{{- end -}}
{{- if not $a.clusterName -}}
{{- fail "agent.clusterName is required: this cluster's name exactly as in the server's clusters list (backend: agent), e.g. agent.clusterName=edge-1." -}}
{{- end -}}
{{- include "periscope-common.validate.dnsLabel" (dict "value" $a.clusterName "path" "agent.clusterName" "example" "edge-1") -}}
{{- if and $a.serverCAHash (not (regexMatch "^sha256:[0-9a-f]{64}$" $a.serverCAHash)) -}}
{{- fail (printf "agent.serverCAHash=%q must be sha256:<64 lowercase hex digits> (the SPKI pin the server prints), or empty." $a.serverCAHash) -}}
{{- end -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$" $a.stateSecretName) -}}
{{- fail (printf "agent.stateSecretName=%q is not a valid Secret name. Use lowercase letters, digits, '-' or '.', e.g. periscope-agent-state." $a.stateSecretName) -}}
{{- end -}}
{{- if and $a.registrationToken.existingSecret $a.registrationToken.value -}}
{{- fail "Set only one of agent.registrationToken.existingSecret and agent.registrationToken.value (prefer existingSecret)." -}}
{{- end -}}
{{- end -}}
