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

{{/* Cross-field rules of the agent chart, each failing with the fix. */}}
{{- define "periscope-agent.validate" -}}
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
{{- include "periscope-common.validate.clusterShell" . -}}
{{- include "periscope-common.validate.protectedNamespaces" . -}}
{{- end -}}
