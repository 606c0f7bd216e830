import { isRequestId, type ShellReapRequest } from '@periscope/protocol';
import { describe, expect, it } from 'vitest';

import { ShellSweeper } from './shell-sweeper';

function sweeper(opts: { connected?: boolean; fail?: boolean; max?: number } = {}) {
  const asked: ShellReapRequest[] = [];
  const requestIds: (string | undefined)[] = [];
  const info: { o: object; m: string }[] = [];
  const warn: string[] = [];
  let connected = opts.connected ?? false;
  const s = new ShellSweeper({
    gateway: {
      reapShells: (req, callOpts) => {
        asked.push(req);
        requestIds.push(callOpts?.requestId);
        return opts.fail === true ? Promise.reject(new Error('apiserver down')) : Promise.resolve(['s-1']);
      },
    },
    namespace: 'shells',
    connected: () => connected,
    maxSessionSeconds: () => opts.max ?? 28_800,
    graceSeconds: 600,
    intervalSeconds: 300,
    log: { info: (o, m) => info.push({ o, m }), warn: (_o, m) => warn.push(m) },
  });
  return {
    s,
    asked,
    requestIds,
    info,
    warn,
    setConnected: (v: boolean) => {
      connected = v;
    },
  };
}

describe(ShellSweeper.name, () => {
  it('while the server is unreachable, removes objects older than the longest session plus the grace', async () => {
    const { s, asked, info } = sweeper({ max: 3600 });
    expect(await s.sweepOnce()).toEqual(['s-1']);
    // nothing is live from the agent's point of view: only age decides
    expect(asked).toEqual([{ namespace: 'shells', liveSessionIds: [], graceMs: (3600 + 600) * 1000 }]);
    expect(info).toHaveLength(1);
  });

  it('gives each sweep its own request id (the Audit-ID of its calls) and logs it', async () => {
    const { s, requestIds, info } = sweeper();
    await s.sweepOnce();
    await s.sweepOnce();
    expect(requestIds).toHaveLength(2);
    for (const rid of requestIds) expect(isRequestId(rid)).toBe(true);
    expect(requestIds[0]).not.toBe(requestIds[1]);
    expect(info.map((l) => (l.o as { rid?: string }).rid)).toEqual(requestIds);
  });

  it('does nothing while the tunnel is up (the server reaper knows the live sessions)', async () => {
    const { s, asked, setConnected } = sweeper({ connected: true });
    expect(await s.sweepOnce()).toEqual([]);
    expect(asked).toEqual([]);
    setConnected(false);
    await s.sweepOnce();
    expect(asked).toHaveLength(1);
  });

  it('logs a failing sweep and resolves (a timer callback never rejects)', async () => {
    const { s, warn } = sweeper({ fail: true });
    expect(await s.sweepOnce()).toEqual([]);
    expect(warn).toEqual(['sweep of expired cluster-shell objects failed; the next one tries again']);
  });

  it('runs one sweep at a time', async () => {
    const { s, asked } = sweeper();
    const [a, b] = await Promise.all([s.sweepOnce(), s.sweepOnce()]);
    expect(a).toEqual(b);
    expect(asked).toHaveLength(1);
  });
});
