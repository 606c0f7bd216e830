import { since } from '../format';
import type { Cluster } from '../types';

/**
 * "direct", "agent connected since …", "disconnected (last seen …)", "never connected", "agent
 * unavailable: <why>" (its connection was refused at the handshake, e.g. a hello of the wrong shape),
 * "unavailable: <why>" for an eks cluster the server cannot use (DescribeCluster, credentials, token
 * renewal or endpoint failed; the reason says what to do).
 */
export function ConnectionBadge({ c }: { c: Cluster }): React.JSX.Element {
  const k = c.connection;
  switch (k.state) {
    case 'direct':
      return <span className="badge neutral">direct</span>;
    case 'connected':
      return (
        <span className="badge ok" title={k.since ?? ''}>
          agent connected{k.since ? ` ${since(k.since)}` : ''}
          {k.rttMs !== null ? ` · ${k.rttMs} ms` : ''}
        </span>
      );
    case 'disconnected':
      return (
        <span className="badge bad" title={k.lastSeen ?? ''}>
          agent disconnected{k.lastSeen ? ` · last seen ${since(k.lastSeen)}` : ''}
        </span>
      );
    case 'never-connected':
      return <span className="badge warn">agent never connected</span>;
    case 'unavailable':
      return (
        <span className="badge bad" title={k.reason ?? ''} data-testid="agent-unavailable">
          {c.backend === 'agent' ? 'agent unavailable' : 'unavailable'}
          {k.reason ? `: ${k.reason}` : ''}
        </span>
      );
  }
}

export function Tags({ tags }: { tags: Record<string, string> }): React.JSX.Element {
  const entries = Object.entries(tags);
  if (entries.length === 0) return <span className="muted">—</span>;
  return (
    <span className="tags">
      {entries.map(([k, v]) => (
        <span key={k} className="chip">
          {k}={v}
        </span>
      ))}
    </span>
  );
}
