import { afterEach, describe, expect, it } from 'vitest';

import type { TcpProxy } from '../support/tcp-proxy';
import { until } from '../support/wait';
import { useFaultRig, FaultRig, sleep, TUNNEL_GRACE_SECONDS, type Rss, type Shell } from './fault-rig';

/**
 * Faults of the agent tunnel: the network between agent and server cut for less and for more
 * than the grace period (a TCP proxy between them destroys every connection and holds new ones),
 * and the agent crashing or stopping mid-session. The victim is a cluster shell on `local-agent`
 * (through the tunnel); the bystander a cluster shell of another operator on `local` (the
 * kubeconfig backend: no tunnel), which must not notice anything.
 */
describe('fault: the agent tunnel', () => {
  let rig: FaultRig;
  let proxy: TcpProxy;
  let baseline: Rss;

  useFaultRig({ tunnelProxy: true }, (r, b) => {
    if (!r.sys.tunnelProxy) throw new Error('no tunnel proxy');
    rig = r;
    proxy = r.sys.tunnelProxy;
    baseline = b;
  });

  afterEach(() => {
    (proxy as TcpProxy | undefined)?.restore();
  });

  async function victimAndBystander(): Promise<{ victim: Shell; bystander: Shell }> {
    await rig.waitAgentReady();
    const [victim, bystander] = await Promise.all([
      rig.openShell('local-agent', 'admin'),
      rig.openShell('local', 'ops'),
    ]);
    return { victim, bystander };
  }

  it('cut within the grace period: the session lives on, every output byte arrives once, in order', async () => {
    const { victim, bystander } = await victimAndBystander();
    const before = await rig.agentView();
    const accepted = proxy.accepted;
    // Output produced before, during and after the cut.
    victim.client.type('for i in $(seq 1 40); do echo tick-$i; sleep 0.1; done; echo ticks-$((40+2))\n');
    await victim.client.waitText('the first ticks', /tick-3\r\n/);

    proxy.sever();
    const cutAt = Date.now();
    await until('the server to see the agent gone', async () => !(await rig.agentView()).connected, 10_000);
    // The bystander does not notice.
    expect(await rig.echo(bystander, 'bystander-during-cut')).toBeLessThan(10_000);
    await sleep(Math.max(0, 3500 - (Date.now() - cutAt)));
    proxy.restore();

    await victim.client.waitText('every tick and the end marker', /ticks-42/, 30_000);
    const ticks = [...victim.client.text().matchAll(/tick-(\d+)\r\n/g)].map((m) => Number(m[1]));
    expect(ticks).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    // Same session, same socket: the browser saw nothing.
    await rig.echo(victim, 'victim-after-cut');
    expect(victim.client.closeCode).toBeUndefined();
    expect(victim.client.frame('closed')).toBeUndefined();
    expect(victim.client.frame('error')).toBeUndefined();
    // It really was a new connection.
    const after = await rig.agentView();
    expect(after.connected).toBe(true);
    expect(after.connectedSince).not.toBe(before.connectedSince);
    expect(proxy.accepted).toBeGreaterThan(accepted);
    await rig.echo(bystander, 'bystander-after-cut');

    expect(await rig.close(victim)).toMatchObject({ reason: 'client_close' });
    expect(await rig.close(bystander)).toMatchObject({ reason: 'client_close' });
    await rig.expectCleanEnd(baseline);
  }, 180_000);

  it('cut beyond the grace period: the session closes with the reason when the grace ends; its objects go once the tunnel is back', async () => {
    const { victim, bystander } = await victimAndBystander();
    proxy.sever();
    const cutAt = Date.now();
    expect(await rig.echo(bystander, 'bystander-during-cut')).toBeLessThan(10_000);
    const { closed, error } = await rig.closedWithin(victim, TUNNEL_GRACE_SECONDS * 1000 + 20_000);
    const closedAfterMs = Date.now() - cutAt;
    // Not before the grace period, and not much later.
    expect(closedAfterMs).toBeGreaterThanOrEqual(TUNNEL_GRACE_SECONDS * 1000 - 1000);
    expect(closedAfterMs).toBeLessThan(TUNNEL_GRACE_SECONDS * 1000 + 10_000);
    expect(error).toMatchObject({
      code: 'E_STREAM',
      message: expect.stringMatching(new RegExp(`agent unreachable for more than ${TUNNEL_GRACE_SECONDS} s`)),
    });
    expect(closed).toMatchObject({ reason: 'stream_error' });
    expect(await rig.echo(bystander, 'bystander-still-cut')).toBeLessThan(10_000);
    // Its Pod and Secret can only be removed through the agent: once the tunnel is back.
    await sleep(2000);
    proxy.restore();
    expect(await rig.close(bystander)).toMatchObject({ reason: 'client_close' });
    await rig.expectCleanEnd(baseline, { objectsTimeoutMs: 60_000 });
    expect((await rig.closeEvent(victim.sessionId))?.body).toMatchObject({ close_reason: 'stream_error' });
  }, 180_000);

  it('agent crash and restart mid-session: the session closes as soon as the new agent says it lost the stream', async () => {
    const { victim, bystander } = await victimAndBystander();
    const oldAgent = rig.pidOf('agent');
    await rig.sys.kill('agent', 'SIGKILL');
    expect(await rig.echo(bystander, 'bystander-agent-down')).toBeLessThan(10_000);
    const restartedAt = Date.now();
    await rig.sys.start('agent'); // its identity comes from the state Secret: no new registration
    expect(rig.pidOf('agent')).not.toBe(oldAgent);
    const { closed, error } = await rig.closedWithin(victim, TUNNEL_GRACE_SECONDS * 1000 + 20_000);
    // Ended by the resume handshake with the new agent, not by the grace timer.
    expect(Date.now() - restartedAt).toBeLessThan(TUNNEL_GRACE_SECONDS * 1000);
    expect(error).toMatchObject({
      code: 'E_STREAM',
      message: expect.stringMatching(/no longer knows this stream/),
    });
    expect(closed).toMatchObject({ reason: 'stream_error' });
    await rig.echo(bystander, 'bystander-agent-back');
    expect(await rig.close(bystander)).toMatchObject({ reason: 'client_close' });
    await rig.expectCleanEnd(baseline);
  }, 180_000);

  const sigterm: { sessionId?: string; agentBackAt?: number } = {};

  it('agent stopped cleanly (SIGTERM) mid-session and started again: the session closes at once, saying why', async () => {
    const { victim, bystander } = await victimAndBystander();
    const stoppedAt = Date.now();
    await rig.sys.kill('agent', 'SIGTERM');
    const { closed, error } = await rig.closedWithin(victim, 20_000);
    expect(Date.now() - stoppedAt).toBeLessThan(TUNNEL_GRACE_SECONDS * 1000);
    expect(error).toMatchObject({ code: 'E_STREAM', message: expect.stringMatching(/agent shutting down/) });
    expect(closed).toMatchObject({ reason: 'stream_error' });
    expect(await rig.echo(bystander, 'bystander-agent-stopped')).toBeLessThan(10_000);
    await rig.sys.start('agent');
    sigterm.agentBackAt = Date.now();
    sigterm.sessionId = victim.sessionId;
    expect(await rig.close(bystander)).toMatchObject({ reason: 'client_close' });
    await rig.expectCleanEnd(baseline, { objectsTimeoutMs: 60_000 });
  }, 180_000);

  // A control-plane request in flight when the agent's connection drops is re-sent (same request
  // id) on the new connection, so teardown finishes as soon as the agent is back.
  it('the teardown after that stop is retried on the new tunnel instead of waiting out the request timeout', async () => {
    expect(sigterm.sessionId, 'the previous case ran').toBeDefined();
    const close = await rig.closeEvent(sigterm.sessionId ?? '');
    expect(close, 'the audit close').toBeDefined();
    // The agent is back within about a second; teardown (read the command log, delete two
    // objects) takes well under a second here.
    expect(Date.parse(close?.time ?? '') - (sigterm.agentBackAt ?? 0)).toBeLessThan(10_000);
  });
});
