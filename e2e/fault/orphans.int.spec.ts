import { describe, expect, it } from 'vitest';

import { TerminalClient } from '../support/terminal-client';
import { until } from '../support/wait';
import {
  FAST_REAPER_ENV,
  FaultRig,
  useFaultRig,
  REAPER_KNOBS,
  REAPER_SKIP_REASON,
  SESSION_LABEL,
  SHELL_NAMESPACE,
  sleep,
  TUNNEL_GRACE_SECONDS,
  type Rss,
  type Shell,
} from './fault-rig';

/*
 * Faults that leave orphans only the reaper can remove (this system runs it every 5 s for
 * objects older than 5 s): a server crash, and a tunnel cut for longer than teardown waits.
 */
let rig: FaultRig;
let baseline: Rss;

// The orphaned objects of a crashed server are the reaper's job (grace and interval short).
useFaultRig({ tunnelProxy: true, env: FAST_REAPER_ENV }, (r, b) => {
  rig = r;
  baseline = b;
});

/**
 * The server crashes (SIGKILL) with sessions open on both clusters and is started again with
 * the same data directory and port. Every session of the server is a victim here (they all live
 * in its memory); what must hold: the new server closes each audited open with
 * `server_restart`, a resume attempt says the session is gone, the agent comes back on its own,
 * the reaper removes the orphaned Pods and Secrets, slots are free and new sessions work.
 */
describe('fault: server restart mid-session', () => {
  let victims: Shell[] = [];

  it('after kill -9 and a restart, every open session has its audit close (server_restart) and cannot be resumed', async () => {
    victims = await Promise.all([rig.openShell('local', 'admin'), rig.openShell('local-agent', 'ops')]);
    for (const v of victims) v.client.type('sleep 600\n'); // something running in each shell
    const oldServer = rig.pidOf('server');
    await rig.sys.kill('server', 'SIGKILL');
    for (const v of victims) expect(await v.client.closed).toBe(1006); // dropped, no close frame
    await rig.sys.start('server');
    expect(rig.pidOf('server')).not.toBe(oldServer);
    rig.forgetSignIns();
    // Nobody tore the victims' objects down: they are orphans now (the reaper's first look at
    // them is a few seconds away).
    const orphans = await rig.shellObjects();
    for (const v of victims)
      expect(orphans).toEqual(
        expect.arrayContaining([
          `pod/periscope-shell-${v.sessionId}`,
          `secret/periscope-shell-${v.sessionId}`,
        ]),
      );

    const closes = await rig.expectEveryOpenClosed();
    for (const v of victims)
      expect(closes.get(v.sessionId)?.body, `close of ${v.cluster}`).toMatchObject({
        close_reason: 'server_restart',
        session_id: v.sessionId,
        cluster: v.cluster,
      });
    expect(await rig.liveSessions()).toEqual([]);

    // The browser's resume finds nothing to resume.
    for (const v of victims) {
      const again = new TerminalClient(
        `ws://127.0.0.1:${rig.sys.port}/api/sessions/${v.sessionId}/attach?received=${v.client.bytes}`,
        await rig.headers(v.user),
      );
      expect(await again.closed).toBe(4410);
      expect(again.frame('error')).toMatchObject({ code: 'E_SESSION_GONE', retryable: false });
    }
    // The agent reconnects by itself (its identity and the agent CA survive the restart).
    await rig.waitAgentReady();
  }, 180_000);

  it.skipIf(!REAPER_KNOBS)(
    `the reaper removes the orphaned Pods and Secrets (${REAPER_KNOBS ? 'reaper knobs present' : REAPER_SKIP_REASON})`,
    async () => {
      await rig.waitNoShellObjects(60_000);
    },
    90_000,
  );

  it('slots are free, new sessions work on both clusters, memory is back', async () => {
    if (!REAPER_KNOBS) {
      // Without a fast reaper, remove the orphans by hand so the remaining checks mean something.
      await rig.sys.cluster.kubectl(['-n', SHELL_NAMESPACE, 'delete', 'pods,secrets', '-l', SESSION_LABEL]);
    }
    await rig.expectCleanEnd(baseline);
  }, 180_000);
});

/**
 * The tunnel stays cut for longer than teardown waits for the agent (reading the command log
 * and deleting the objects wait up to 15 s and 20 s for the connection): the session closes when the
 * tunnel grace ends, its audit close and its cap slot come when teardown gives up, and the
 * Pod and Secret, left behind, are removed by the reaper. The bystander on the direct cluster
 * works throughout.
 *
 * Note on this system: `local` and `local-agent` are the same apiserver and the same shell
 * namespace, so the reaper of `local` (direct) also sees the orphans of `local-agent` and may
 * remove them before the agent is back. What is proven is that nothing leaks; that the reaper
 * works through an agent is the business of the reaper's own tests.
 */
describe('fault: tunnel cut longer than teardown waits', () => {
  it('the session closes, its slot is freed while the tunnel is still down, and the reaper removes its objects after', async () => {
    const proxy = rig.sys.tunnelProxy;
    if (!proxy) throw new Error('no tunnel proxy');
    await rig.waitAgentReady();
    const [victim, bystander] = await Promise.all([
      rig.openShell('local-agent', 'admin'),
      rig.openShell('local', 'ops'),
    ]);
    proxy.sever();
    try {
      const { closed, error } = await rig.closedWithin(victim, TUNNEL_GRACE_SECONDS * 1000 + 20_000);
      expect(closed).toMatchObject({ reason: 'stream_error' });
      expect(error).toMatchObject({ code: 'E_STREAM' });
      // Teardown gives up (15 s + 20 s), then the close is audited and the slot released, with
      // the tunnel still down.
      await until(
        'the audit close of the victim',
        async () => (await rig.closeEvent(victim.sessionId)) !== undefined,
        90_000,
      );
      expect((await rig.closeEvent(victim.sessionId))?.body).toMatchObject({ close_reason: 'stream_error' });
      expect((await rig.liveSessions()).map((s) => s.sessionId)).toEqual([bystander.sessionId]);
      expect(await rig.echo(bystander, 'bystander-long-cut')).toBeLessThan(10_000);
    } finally {
      proxy.restore();
    }
    expect(await rig.close(bystander)).toMatchObject({ reason: 'client_close' });
    await rig.waitAgentReady();
    if (REAPER_KNOBS) await rig.waitNoShellObjects(60_000);
    else {
      process.stderr.write(`[fault] reaper check skipped: ${REAPER_SKIP_REASON}\n`);
      await sleep(1000);
      await rig.sys.cluster.kubectl(['-n', SHELL_NAMESPACE, 'delete', 'pods,secrets', '-l', SESSION_LABEL]);
    }
    await rig.expectCleanEnd(baseline);
  }, 240_000);
});
