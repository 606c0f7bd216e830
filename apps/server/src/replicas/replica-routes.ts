/**
 * Which requests belong to a replica other than the one they landed on: everything under
 * `/api/clusters/{cluster}/...` (the cluster's agent tunnel may be held elsewhere) and under
 * `/api/sessions/{id}...` (a live terminal session is held by one replica), and an agent's request
 * record `/api/agents/{cluster}/requests/{rid}` (its ring lives with the tunnel). The cluster and
 * agent lists (merged from Redis), sign-in, audit and the rest are answered by any replica.
 */
export type RouteKey = { kind: 'agent'; id: string } | { kind: 'session'; id: string };

const CLUSTER_PATH = /^\/api\/clusters\/([^/?#]{1,253})\/[^?#]*$/;
const AGENT_REQUEST_PATH = /^\/api\/agents\/([^/?#]{1,253})\/requests\/[^/?#]+$/;
const SESSION_PATH = /^\/api\/sessions\/([0-9a-f-]{36})(?:\/[^?#]*)?$/;

/** The owner record a request path routes by, or undefined (any replica answers it). */
export function routeKey(url: string | undefined): RouteKey | undefined {
  const path = (url ?? '/').split('?')[0] ?? '/';
  const cluster = CLUSTER_PATH.exec(path) ?? AGENT_REQUEST_PATH.exec(path);
  if (cluster) {
    let id: string;
    try {
      id = decodeURIComponent(cluster[1] ?? '');
    } catch {
      return undefined; // malformed escapes: the route itself answers 400/404
    }
    return id === '' ? undefined : { kind: 'agent', id };
  }
  const session = SESSION_PATH.exec(path);
  if (session) return { kind: 'session', id: session[1] ?? '' };
  return undefined;
}

/** Hop-by-hop headers (RFC 9110 §7.6.1): never copied from one connection to the next. */
export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);
