{{/*
The egress policy of shell session pods, identical in both charts: a NetworkPolicy in the shell
namespace that selects every session pod, admits no ingress, and lets them reach only DNS and the
apiserver (plus clusterShell.networkPolicy.extraEgress). Without it a shell can reach the cloud
instance metadata endpoint and every internal service, and carry its token to anywhere the
apiserver is reachable from.

Call with the chart's root context. Renders nothing unless clusterShell.enabled and
clusterShell.networkPolicy.enabled.
*/}}
{{- define "periscope-common.clusterShell.egressPolicy" -}}
{{- $cs := .Values.clusterShell -}}
{{- $np := $cs.networkPolicy | default dict -}}
{{- if and $cs.enabled $np.enabled }}
{{- $api := include "periscope-common.clusterShell.apiserverPeers" . | fromJson }}
---
# Session pods reach DNS and the apiserver, nothing else (docs/cluster-shell.md, security posture).
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "periscope-common.fullname" . }}-shell-egress
  namespace: {{ $cs.namespace }}
  labels:
    {{- include "periscope-common.labels" . | nindent 4 }}
    periscope.io/purpose: cluster-shell
  {{- with $api.source }}
  annotations:
    periscope.io/apiserver-addresses: {{ . | quote }}
  {{- end }}
spec:
  podSelector:
    matchLabels:
      app.kubernetes.io/name: periscope-shell
  policyTypes: [Ingress, Egress]
  # No ingress rule: nothing connects to a session pod (exec and attach go through the kubelet).
  egress:
    - ports:
        - port: 53
          protocol: UDP
        - port: 53
          protocol: TCP
      {{- with ($np.dns | default dict).to }}
      to:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    - to:
        {{- range $api.cidrs }}
        - ipBlock:
            cidr: {{ . }}
        {{- end }}
      ports:
        {{- range $api.ports }}
        - port: {{ . }}
          protocol: TCP
        {{- end }}
    {{- with $np.extraEgress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
{{- end -}}

{{/*
The apiserver as NetworkPolicy peers, as JSON {cidrs, ports, source}. Most CNIs apply a policy
after kube-proxy has rewritten the `kubernetes` Service IP to an apiserver endpoint, so the endpoint
addresses are what must be allowed; the Service IP is allowed too, for CNIs that look before.

clusterShell.networkPolicy.apiserver.cidrs wins when set. Otherwise the addresses are looked up at
install/upgrade time from the default/kubernetes EndpointSlice (and Service); when that is
impossible (helm template, --dry-run=client, no read access) the install fails and says what to set,
rather than render a policy that silently cuts shells off the apiserver or lets them reach anything.
*/}}
{{- define "periscope-common.clusterShell.apiserverPeers" -}}
{{- $api := (.Values.clusterShell.networkPolicy | default dict).apiserver | default dict -}}
{{- $ports := list -}}
{{- range ($api.ports | default list) -}}{{- $ports = append $ports (int64 .) -}}{{- end -}}
{{- $cidrs := list -}}
{{- $source := "" -}}
{{- range ($api.cidrs | default list) -}}{{- $cidrs = append $cidrs (toString .) -}}{{- end -}}
{{- if eq (len $cidrs) 0 -}}
{{- $found := list -}}
{{- $slices := lookup "discovery.k8s.io/v1" "EndpointSlice" "default" "" | default dict -}}
{{- range ($slices.items | default list) -}}
{{- if eq (index (.metadata.labels | default dict) "kubernetes.io/service-name" | default "") "kubernetes" -}}
{{- range (.endpoints | default list) -}}
{{- range (.addresses | default list) -}}{{- $found = append $found (toString .) -}}{{- end -}}
{{- end -}}
{{- range (.ports | default list) -}}{{- if .port -}}{{- $ports = append $ports (int64 .port) -}}{{- end -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- if eq (len $found) 0 -}}
{{- fail "clusterShell.networkPolicy: the apiserver's addresses could not be looked up (helm template, --dry-run=client, or no read access to EndpointSlices in namespace default), so the shell pods' egress policy cannot allow them. Set clusterShell.networkPolicy.apiserver.cidrs to the apiserver endpoint addresses, each as a /32 (IPv6: /128); list them with: kubectl get endpointslice -n default -l kubernetes.io/service-name=kubernetes -o jsonpath='{.items[*].endpoints[*].addresses}'. On a managed control plane whose addresses change (EKS, GKE, AKS), use the CIDR they are drawn from. Or set clusterShell.networkPolicy.enabled=false to install without the policy." -}}
{{- end -}}
{{- $svc := lookup "v1" "Service" "default" "kubernetes" | default dict -}}
{{- with ($svc.spec | default dict) -}}
{{- range (.clusterIPs | default (list .clusterIP)) -}}{{- if . -}}{{- $found = append $found (toString .) -}}{{- end -}}{{- end -}}
{{- range (.ports | default list) -}}{{- if .port -}}{{- $ports = append $ports (int64 .port) -}}{{- end -}}{{- end -}}
{{- end -}}
{{- range ($found | uniq) -}}
{{- $cidrs = append $cidrs (printf "%s/%s" . (ternary "128" "32" (contains ":" .))) -}}
{{- end -}}
{{- $source = "looked up at install from default/kubernetes; upgrade the release when they change" -}}
{{- end -}}
{{- if eq (len $ports) 0 -}}
{{- fail "clusterShell.networkPolicy.apiserver.ports is empty. List the apiserver ports shell pods may reach, e.g. [443, 6443]." -}}
{{- end -}}
{{- dict "cidrs" $cidrs "ports" ($ports | uniq | sortAlpha) "source" $source | toJson -}}
{{- end -}}
