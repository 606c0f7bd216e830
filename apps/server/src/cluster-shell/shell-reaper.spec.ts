import type { ClusterGateway } from '@periscope/cluster-ops';
import type { ShellReapRequest } from '@periscope/protocol';
import { describe, expect, it } from 'vitest';

import { reapOnce } from './shell-reaper';

describe(reapOnce.name, () => {
  it('asks every shell-enabled cluster to reap what is not live, and survives one failing', async () => {
    const seen: [string, ShellReapRequest][] = [];
    const gateway = (cluster: string): ClusterGateway =>
      ({
        reapShells: (req: ShellReapRequest) => {
          seen.push([cluster, req]);
          if (cluster === 'down') return Promise.reject(new Error('agent not connected'));
          return Promise.resolve(cluster === 'a' ? ['old-1'] : []);
        },
      }) as unknown as ClusterGateway;
    const warnings: string[] = [];
    const removed = await reapOnce({
      clusters: () => ['a', 'down', 'b'],
      gateway,
      liveSessions: () => ['live-1'],
      namespace: 'periscope-system',
      graceMs: 600_000,
      log: { info: () => undefined, warn: (_o, m) => warnings.push(m) },
    });
    expect(removed).toEqual({ a: ['old-1'] });
    expect(seen.map(([c]) => c)).toEqual(['a', 'down', 'b']);
    expect(seen[0]![1]).toEqual({
      namespace: 'periscope-system',
      liveSessionIds: ['live-1'],
      graceMs: 600_000,
    });
    expect(warnings).toHaveLength(1);
  });

  it('never rejects: a cluster list that throws is logged and the run ends (the next one retries)', async () => {
    const warnings: string[] = [];
    const removed = await reapOnce({
      clusters: () => {
        throw new TypeError("Cannot read properties of undefined (reading 'enabled')");
      },
      gateway: () => {
        throw new Error('not reached');
      },
      liveSessions: () => [],
      namespace: 'periscope-system',
      graceMs: 600_000,
      log: { info: () => undefined, warn: (_o, m) => warnings.push(m) },
    });
    expect(removed).toEqual({});
    expect(warnings).toEqual(['reaper could not list the clusters to check; will retry']);
  });

  it('never reaps without the live set: a shared state that does not answer skips the run', async () => {
    const warnings: string[] = [];
    let asked = 0;
    const removed = await reapOnce({
      clusters: () => ['a'],
      gateway: () => {
        asked++;
        throw new Error('not reached');
      },
      liveSessions: () => Promise.reject(new Error('Command timed out')),
      namespace: 'periscope-system',
      graceMs: 600_000,
      log: { info: () => undefined, warn: (_o, m) => warnings.push(m) },
    });
    expect(removed).toEqual({});
    expect(asked).toBe(0);
    expect(warnings).toEqual(['reaper could not list the live sessions; will retry']);
  });
});
