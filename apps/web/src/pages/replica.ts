/**
 * The server replica a row names (several replicas behind one load balancer): the one holding an
 * agent's tunnel (`GET /api/agents` `replica`) or a live session (`GET /api/sessions` `replica`).
 * Shown only when the server sends one; a row without it (one replica, or a disconnected agent)
 * looks as before.
 */

/** Longest replica id shown whole (the server's ids are at most 100 of `[A-Za-z0-9._-]`). */
export const REPLICA_SHOWN_MAX = 100;

/** The replica to show for a row, or undefined (none sent, null, or blank). */
export function replicaOf(row: { replica?: string | null }): string | undefined {
  const r = row.replica;
  if (typeof r !== 'string') return undefined;
  const t = r.trim();
  if (t === '') return undefined;
  return t.length > REPLICA_SHOWN_MAX ? `${t.slice(0, REPLICA_SHOWN_MAX - 1)}…` : t;
}
