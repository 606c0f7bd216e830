/**
 * What an operator should do about each refusal or failure: the troubleshooting texts of the
 * operator guide (docs/cluster-shell.md), keyed by error code.
 */
import {
  CLIENT_ERROR,
  ERROR_CODE,
  SESSION_KIND,
  TERMINAL_ERROR,
  type SessionKind,
} from '@periscope/protocol';

export interface Help {
  title: string;
  fix: string;
}

export function helpFor(code: string, kind: SessionKind): Help {
  switch (code) {
    case ERROR_CODE.forbidden:
      return kind === SESSION_KIND.clusterShell
        ? {
            title: 'Your tier may not open a cluster shell',
            fix: "The operator's tier is not in clusterShell.tiers. Either add the operator to a listed tier or add their tier to the list.",
          }
        : {
            title: 'Your tier may not exec into this pod',
            fix: "Your tier's RBAC on this cluster does not allow pods/exec. Ask for a tier that may exec (triage or above), or for that tier's binding on this cluster (periscope-agent clusterRBAC.enabled=true).",
          };
    case ERROR_CODE.capUser:
      return {
        title: 'You have reached your session limit',
        fix: 'Cap reached. Close an old session (below), or bump maxSessionsPerUser.',
      };
    case ERROR_CODE.capCluster:
      return {
        title: 'This cluster has reached its session limit',
        fix: 'Cap reached. Close an old session, or bump maxSessionsTotal; otherwise try again later.',
      };
    case ERROR_CODE.clusterShellDisabled:
      return {
        title: 'The cluster shell is not available here',
        fix: 'Check the /api/clusters response (clusterShellReason); confirm clusterShell.enabled=true on the server helm release and, for agent clusters, on the periscope-agent chart with the same namespace and tiers. "cluster-shell RBAC missing" on a kubeconfig or eks cluster: apply the install step the message names (periscope-agent chart, mode=rbac-only); the shell appears without a restart.',
      };
    case ERROR_CODE.clusterShellRequiresTier:
      return {
        title: 'The cluster shell needs tier authorization',
        fix: 'Set authorization.mode: tier in the auth file (chart auth.authorization.mode=tier).',
      };
    case ERROR_CODE.protectedNamespace:
      return {
        title: 'This namespace belongs to Periscope',
        fix: "Pods of Periscope's own namespaces (shell sessions, the agent, the server, kube-system and any listed as protected) are for admins only. Exec into a pod of your own workloads, or ask a Periscope admin.",
      };
    case ERROR_CODE.execDisabled:
      return {
        title: 'Pod exec is disabled on this cluster',
        fix: 'Pod exec is turned off for this cluster in the clusters file (exec.enabled: false). Ask an administrator to enable it.',
      };
    case TERMINAL_ERROR.provision:
      return {
        title: 'The session pod did not start',
        fix: 'Run kubectl -n periscope-system describe pod periscope-shell-* for events. Common: the image pull is rejected by an air-gapped cluster (mirror the image and set clusterShell.image.repository); "identity failed (HTTP 403)": the chart on that cluster predates per-session identities (upgrade the agent chart, or the server chart for in-cluster); "identity failed (HTTP 422)": the shell-identity admission policy refused the session (read its message; an operator subject starting with system: is never allowed); "secret failed (HTTP 403)": the provisioner Role is missing (clusterShell.enabled=true on the agent chart).',
      };
    case TERMINAL_ERROR.sessionGone:
      return {
        title: 'Session ended',
        fix: 'The session ended while the connection was down (or its resume grace ran out). Open a new one.',
      };
    case TERMINAL_ERROR.signedOut:
      return {
        title: 'You signed out',
        fix: 'Signing out ends the terminals of that sign-in (sessions in your other browsers go on). Sign in again and open a new session.',
      };
    case TERMINAL_ERROR.tierChanged:
      return {
        title: 'Your tier changed',
        fix: 'Your groups at the identity provider changed, and with them your tier: this session ran with the old one, so it ended. Open a new session; it runs with your current tier.',
      };
    case CLIENT_ERROR.transport:
      return {
        title: 'The terminal socket did not open',
        fix: 'A proxy may block WebSockets, or the origin is not allowed (PERISCOPE_PUBLIC_URL / PERISCOPE_ALLOWED_ORIGINS). Open a new session to try again.',
      };
    case CLIENT_ERROR.reconnectFailed:
      return {
        title: 'Could not reconnect',
        fix: 'The network stayed down longer than the reconnect attempts. The session may still be waiting on the server for its resume grace; open a new one if it is gone.',
      };
    case ERROR_CODE.notFound:
      return { title: 'Not found', fix: 'The cluster, pod or endpoint does not exist on this server.' };
    case ERROR_CODE.auth:
      return { title: 'Signed out', fix: 'Your login session expired. Sign in again.' };
    case CLIENT_ERROR.network:
      return { title: 'Cannot reach the server', fix: 'Check your connection to Periscope and try again.' };
    default:
      return { title: code, fix: 'See docs/troubleshooting.md, or the server log for this session id.' };
  }
}

/** Human words for the close reasons of the server. */
export function closedText(reason: string, exitCode?: number): string {
  if (exitCode !== undefined) return `closed · exit ${exitCode}`;
  return `closed · ${reason}`;
}
