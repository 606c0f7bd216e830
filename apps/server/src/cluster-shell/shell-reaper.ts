import type { ClusterGateway } from '@periscope/cluster-ops';
import { newRid } from '@periscope/protocol';

export interface ReaperDeps {
  /** clusters that currently offer the cluster shell */
  clusters: () => string[];
  gateway: (cluster: string) => ClusterGateway;
  /** session ids that are live (on every replica, when they share their state) */
  liveSessions: () => string[] | Promise<string[]>;
  namespace: string;
  graceMs: number;
  log: { info(o: object, m: string): void; warn(o: object, m: string): void };
}

/**
 * Removes shell Pods and Secrets of sessions this server does not know (a crash, a lost
 * teardown) once they are older than the grace period. One cluster failing does not stop the
 * others. Returns what was removed per cluster.
 */
export async function reapOnce(d: ReaperDeps): Promise<Record<string, string[]>> {
  const removed: Record<string, string[]> = {};
  let live: string[];
  let clusters: string[];
  try {
    // Never reaps without the live set: a shared state (Redis) that does not answer skips the run.
    live = await d.liveSessions();
  } catch (err) {
    d.log.warn({ err: (err as Error).message }, 'reaper could not list the live sessions; will retry');
    return removed;
  }
  try {
    clusters = d.clusters();
  } catch (err) {
    // Never a rejection nobody handles: the next run tries again.
    d.log.warn({ err: (err as Error).message }, 'reaper could not list the clusters to check; will retry');
    return removed;
  }
  for (const cluster of clusters) {
    // One request id per cluster and run: the Audit-ID of its lists and deletes (over an agent,
    // the tunnel request's id).
    const rid = newRid();
    try {
      const ids = await d
        .gateway(cluster)
        .reapShells({ namespace: d.namespace, liveSessionIds: live, graceMs: d.graceMs }, { requestId: rid });
      if (ids.length > 0) {
        removed[cluster] = ids;
        for (const sessionId of ids)
          d.log.info({ cluster, sessionId, rid }, 'reaped leftover cluster-shell objects');
      }
    } catch (err) {
      d.log.warn(
        { cluster, err: (err as Error).message, rid },
        'reaper could not check this cluster; will retry',
      );
    }
  }
  return removed;
}
