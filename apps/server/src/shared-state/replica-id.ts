import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

/**
 * This process's name in the shared state and the logs: PERISCOPE_REPLICA_ID when set, else the
 * host name (in Kubernetes, the pod name) with a random suffix, so a restarted process never
 * takes for its own the leases of the run before it.
 */
export function replicaId(configured: string | undefined): string {
  if (configured !== undefined) return configured;
  const host = hostname()
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .slice(0, 80);
  return `${host || 'replica'}-${randomBytes(4).toString('hex')}`;
}
