import type { Socket } from 'node:net';

import { describe, expect, it } from 'vitest';

import { until } from '../support/wait';
import { useFaultRig, FaultRig, sleep, type Rss } from './fault-rig';

/** The stall lasts this long (the brief: 20 s). */
const STALL_MS = 20_000;
/**
 * Bound on server and agent RSS while the browser is stalled under a flood. What may legitimately
 * be held for the stalled session: its replay buffer (1 MiB), the WebSocket send buffer up to
 * the high-water mark (1 MiB, then the exec is paused), the tunnel stream's credit window
 * (256 KiB) and kernel socket buffers (not RSS). Add the settle noise of an active process (GC
 * has not run: young-generation garbage of the flood before the pause, up to a few tens of MiB)
 * and 64 MiB is a bound a correct server meets with room, while an unpaused flood (`yes` makes
 * hundreds of MiB per second) crosses it within a second.
 */
const STALL_RSS_MARGIN_MIB = 64;

/**
 * Browsers that stop reading (their sockets paused: nothing is read from the kernel, so the
 * server's sends pile up) while their shells flood output: one through the agent tunnel, one on
 * the direct cluster. Memory must stay bounded (the exec is paused end to end: WebSocket
 * high-water mark → tunnel credit → the agent's exec socket → the pod's TTY; directly: the
 * exec socket), other sessions on the same tunnel and on the other cluster must keep answering,
 * and the stalled sessions must still work and close cleanly.
 */
describe('fault: stalled browser under a flood', () => {
  let rig: FaultRig;
  let baseline: Rss;

  useFaultRig(
    {
      // A stalled browser does not answer pings either; keep the heartbeat (2 intervals to
      // declare it gone) out of the 20 s stall so this case is about back-pressure alone.
      env: { PERISCOPE_EXEC_HEARTBEAT_SECONDS: '30' },
    },
    (r, b) => {
      rig = r;
      baseline = b;
    },
  );

  it('memory stays bounded, the flood is paused at its source, bystanders answer, and the session closes cleanly', async () => {
    // Victims (both stalled): one through the tunnel, one on the direct cluster. Bystanders of
    // another operator on the same tunnel and on the direct cluster.
    const [victim, direct0, sameTunnel, direct] = await Promise.all([
      rig.openShell('local-agent', 'admin'),
      rig.openShell('local', 'admin'),
      rig.openShell('local-agent', 'ops'),
      rig.openShell('local', 'ops'),
    ]);
    const stalled = [victim, direct0];
    for (const v of stalled) v.client.type('cat /dev/urandom | base64\n');
    await until('the floods to flow', () => stalled.every((v) => v.client.bytes > 2 * 1024 * 1024), 30_000);

    const sockets = stalled.map((v) => (v.client.ws as unknown as { _socket: Socket })._socket);
    for (const s of sockets) s.pause(); // the browsers stop reading
    const stalledAt = Date.now();
    let peak: Rss = rig.rss();
    const latencies: number[] = [];
    const bytesOut: number[][] = [];
    const victimBytesOut = async (): Promise<number[]> => {
      const live = await rig.liveSessions();
      return stalled.map((v) => live.find((s) => s.sessionId === v.sessionId)?.bytesOut ?? -1);
    };
    while (Date.now() - stalledAt < STALL_MS) {
      latencies.push(await rig.echo(sameTunnel, 'same-tunnel', 15_000));
      latencies.push(await rig.echo(direct, 'direct', 15_000));
      bytesOut.push(await victimBytesOut());
      const now = rig.rss();
      peak = { server: Math.max(peak.server, now.server), agent: Math.max(peak.agent, now.agent) };
      await sleep(1000);
    }
    process.stderr.write(
      `[fault] stall: peak RSS server ${peak.server.toFixed(1)} MiB, agent ${peak.agent.toFixed(1)} MiB ` +
        `(baseline ${baseline.server.toFixed(1)} / ${baseline.agent.toFixed(1)}); bystander round trips ` +
        `max ${Math.max(...latencies)} ms; victims' output the server took (tunnel/direct): ${bytesOut.map((b) => b.join('/')).join(' → ')}\n`,
    );
    expect(peak.server).toBeLessThan(baseline.server + STALL_RSS_MARGIN_MIB);
    expect(peak.agent).toBeLessThan(baseline.agent + STALL_RSS_MARGIN_MIB);
    // The flood is paused, not buffered: in the second half of the stall the server takes no
    // more output from the shell.
    const half = bytesOut.slice(Math.floor(bytesOut.length / 2));
    expect(half.length).toBeGreaterThan(1);
    expect(half[half.length - 1]).toEqual(half[0]);
    // Bystanders never waited behind the stalled stream.
    expect(Math.max(...latencies)).toBeLessThan(5000);

    // The stalled browser still holds a working session: stop the flood (keystrokes still go
    // out), read again, and the shell answers; then a planned close cleans everything up.
    for (const [i, v] of stalled.entries()) {
      v.client.type('\x03');
      v.client.chunks.length = 0; // what the flood left is of no interest (and large)
      sockets[i]?.resume();
    }
    for (const v of stalled) {
      await rig.echo(v, 'victim-after-stall', 60_000);
      expect(v.client.frame('closed')).toBeUndefined();
    }
    for (const s of [...stalled, sameTunnel, direct])
      expect(await rig.close(s)).toMatchObject({ reason: 'client_close' });
    await rig.expectCleanEnd(baseline);
  }, 240_000);
});
