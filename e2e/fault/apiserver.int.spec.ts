import { describe, expect, it } from 'vitest';

import {
  FAST_REAPER_ENV,
  FaultRig,
  useFaultRig,
  REAPER_KNOBS,
  REAPER_SKIP_REASON,
  SESSION_LABEL,
  SHELL_NAMESPACE,
  sleep,
  type Rss,
  type Shell,
} from './fault-rig';

/** How long the apiserver stays down. */
const OUTAGE_MS = 5000;

/**
 * The Kubernetes apiserver of the (one) local cluster is killed and started again with the same
 * flags and etcd. Both clusters of the system (`local` direct, `local-agent` through the agent)
 * are behind it, so every exec stream through it breaks: both shells are victims. What must not
 * be affected: the server itself (health, the API), the agent tunnel. What must hold: each
 * session ends with an audit close, a session asked for during the outage fails with its reason
 * and gives its slot back, the objects teardown could not delete (the apiserver was down) are
 * removed by the reaper once it is back, and new sessions work.
 */
describe('fault: apiserver stopped and restarted', () => {
  let rig: FaultRig;
  let baseline: Rss;
  let victims: Shell[] = [];
  const frames = new Map<string, { closed?: Record<string, unknown>; error?: Record<string, unknown> }>();

  // Teardown cannot reach a stopped apiserver: the leftovers are the reaper's (fast here).
  useFaultRig({ env: FAST_REAPER_ENV }, (r, b) => {
    rig = r;
    baseline = b;
  });

  it('open sessions end and are audited; the server and the tunnel stay up; a session asked for meanwhile fails cleanly', async () => {
    victims = await Promise.all([rig.openShell('local', 'admin'), rig.openShell('local-agent', 'ops')]);
    for (const v of victims) v.client.type('while :; do echo tick-$((1+1)); sleep 0.5; done\n');
    await Promise.all(victims.map((v) => v.client.waitText('ticks', /tick-2/)));

    await rig.sys.cluster.stopComponent('kube-apiserver', 'SIGKILL');
    const downAt = Date.now();
    for (const v of victims) frames.set(v.sessionId, await rig.closedWithin(v, 30_000));

    // Not affected: the server, its API, the agent's tunnel.
    expect((await fetch(`${rig.base}/healthz`)).status).toBe(200);
    expect((await rig.agentView()).connected).toBe(true);
    // A session asked for now fails with a reason, and its slot comes back.
    const during = await rig.connectShell('local', 'admin');
    const refused = await rig.closedWithin(during, 60_000);
    expect(refused.error).toMatchObject({ code: 'E_PROVISION', retryable: false });
    expect(refused.closed).toMatchObject({ reason: 'provision_failed' });

    await sleep(Math.max(0, OUTAGE_MS - (Date.now() - downAt)));
    await rig.sys.cluster.startComponent('kube-apiserver');
    const closes = await rig.expectEveryOpenClosed();
    for (const v of victims) expect(closes.get(v.sessionId), `audit close of ${v.cluster}`).toBeDefined();
    expect((await rig.closeEvent(during.sessionId))?.body).toMatchObject({
      close_reason: 'provision_failed',
    });
  }, 180_000);

  // An exec whose connection breaks without an exit status is an error (E_STREAM, reason
  // connection_lost, audit outcome error), not an exit the operator typed.
  it('reports a broken exec connection as an error, not as an exit', async () => {
    for (const v of victims) {
      const f = frames.get(v.sessionId);
      expect(f?.closed?.['reason'], `closed frame of ${v.cluster}`).not.toBe('exit');
      expect(f?.error, `error frame of ${v.cluster}`).toBeDefined();
      const close = await rig.closeEvent(v.sessionId);
      expect(close?.outcome, `audit outcome of ${v.cluster}`).toBe('error');
    }
  });

  it.skipIf(!REAPER_KNOBS)(
    `the reaper removes the Pods and Secrets teardown could not delete (${REAPER_KNOBS ? 'reaper knobs present' : REAPER_SKIP_REASON})`,
    async () => {
      await rig.waitNoShellObjects(60_000);
    },
    90_000,
  );

  it('slots are free, new sessions work on both clusters, memory is back', async () => {
    if (!REAPER_KNOBS)
      await rig.sys.cluster.kubectl(['-n', SHELL_NAMESPACE, 'delete', 'pods,secrets', '-l', SESSION_LABEL]);
    await rig.expectCleanEnd(baseline);
  }, 180_000);
});
