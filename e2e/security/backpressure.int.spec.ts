import { createHash, randomBytes } from 'node:crypto';

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { FaultRig, sleep } from '../fault/fault-rig';
import { TerminalClient } from '../support/terminal-client';
import { until } from '../support/wait';

/** What one session's stdin pushes at the server: four times what a bounded server may hold. */
const FLOOD_BYTES = 64 * 1024 * 1024;
/** The bound on server RSS growth while that flood waits for a process that does not read. */
const RSS_GROWTH_MIB = 16;
/** Binary frames as the SPA sends a paste (apps/web/src/terminal/session-client.ts). */
const FRAME_BYTES = 16 * 1024;
/** The client keeps this much queued in its own socket: it sends as fast as the server takes. */
const CLIENT_QUEUE_BYTES = 1024 * 1024;
const PASTE_BYTES = 2 * 1024 * 1024;
const WARM_UP_BYTES = 32 * 1024 * 1024;

const suffix = Date.now().toString(36);
const ns = `backpressure-${suffix}`;

/** Sends `total` bytes as fast as the server takes them; answers what was sent. */
async function sendAll(
  client: TerminalClient,
  total: number,
  piece: (at: number) => Buffer,
  timeoutMs = 60_000,
): Promise<number> {
  let sent = 0;
  const end = Date.now() + timeoutMs;
  while (sent < total && Date.now() < end) {
    while (sent < total && client.ws.bufferedAmount < CLIENT_QUEUE_BYTES) {
      const b = piece(sent);
      client.ws.send(b);
      sent += b.length;
    }
    await sleep(5);
  }
  return sent;
}

/** Median VmRSS of a process over a few samples, in MiB. */
async function settledRss(rig: FaultRig): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < 5; i++) {
    samples.push(rig.rss().server);
    await sleep(200);
  }
  return samples.sort((a, b) => a - b)[2] ?? NaN;
}

/**
 * Stdin is flow controlled end to end, on every backend: the server (a child process, its RSS
 * read from /proc) pauses the browser's socket while the apiserver exec socket (direct) or the
 * tunnel stream (agent) cannot take more, instead of buffering. A flood into a process that does
 * not read stays in the sender (as a browser keeps a paste it could not send yet), and arrives
 * whole once the process reads; a large paste into a busy shell on the agent path no longer
 * resets the tunnel stream; other sessions on the same server and tunnel keep answering.
 */
describe('backpressure: stdin toward a process that does not read is paused, not buffered', () => {
  let rig: FaultRig;
  let started = false;

  beforeAll(async () => {
    rig = await FaultRig.start({
      // The flood is sent as fast as the server takes it: the rate limit (1 MiB/s by default)
      // would cut it; memory must be bounded by flow control alone.
      env: { PERISCOPE_TERMINAL_STDIN_BYTES_PER_SECOND: String(1024 * 1024 * 1024) },
    });
    started = true;
    await rig.waitAgentReady();
    const cluster = rig.sys.cluster;
    await cluster.createNamespace(ns);
    await cluster.apply(
      [
        {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: 'sink', namespace: ns },
          spec: {
            terminationGracePeriodSeconds: 1,
            containers: [{ name: 'main', image: 'busybox', command: ['sleep', '3600'] }],
          },
        },
        {
          apiVersion: 'rbac.authorization.k8s.io/v1',
          kind: 'RoleBinding',
          metadata: { name: 'tier-admin', namespace: ns },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
          subjects: [{ kind: 'Group', name: 'periscope-tier:admin', apiGroup: 'rbac.authorization.k8s.io' }],
        },
      ]
        .map((o) => JSON.stringify(o))
        .join('\n'),
    );
    await cluster.kubectlOk(['-n', ns, 'wait', '--for=condition=Ready', 'pod/sink', '--timeout=60s']);
    // Warm-up, so that the baseline is a server that has carried stdin before: code loaded and
    // compiled, and the allocator's high-water mark of a stream moving at full speed reached (V8
    // frees the Buffers of forwarded frames only at its next GC; until then they are RSS too).
    // Growth past that baseline is what a session holds, not what passed through it.
    for (const c of ['local', 'local-agent']) {
      const s = await podExec(c, {
        container: 'main',
        tty: false,
        command: ['sh', '-c', `head -c ${WARM_UP_BYTES} >/dev/null; echo warm`],
      });
      const chunk = randomBytes(FRAME_BYTES);
      const sent = await sendAll(s.client, WARM_UP_BYTES, (at) =>
        chunk.subarray(0, Math.min(FRAME_BYTES, WARM_UP_BYTES - at)),
      );
      expect(sent).toBe(WARM_UP_BYTES);
      await s.client.waitText(`the warm-up on ${c}`, /warm/, 60_000);
      await s.client.closed;
    }
  }, 240_000);

  afterAll(async () => {
    if (started) await rig.stop();
  }, 60_000);

  afterEach(async (ctx) => {
    if (ctx.task.result?.state === 'fail')
      process.stderr.write(`--- last process log lines (${ctx.task.name}) ---\n${rig.logTail()}\n`);
    // A failed case leaves its sessions behind; end them so the next case has its cap slots.
    for (const s of await rig.liveSessions())
      await rig.api(`/api/sessions/${s.sessionId}`, { method: 'DELETE' });
    await until('no live sessions', async () => (await rig.liveSessions()).length === 0, 60_000);
  }, 120_000);

  async function podExec(
    cluster: string,
    body: Record<string, unknown>,
    user = 'admin',
  ): Promise<{ sessionId: string; client: TerminalClient }> {
    const res = await rig.api(`/api/clusters/${cluster}/pods/${ns}/sink/exec/sessions`, {
      method: 'POST',
      body,
      user,
    });
    const text = await res.text();
    expect(res.status, `pod exec on ${cluster}: ${text}`).toBe(201);
    const { socketPath, sessionId } = JSON.parse(text) as { socketPath: string; sessionId: string };
    const client = new TerminalClient(`ws://127.0.0.1:${rig.sys.port}${socketPath}`, await rig.headers(user));
    await client.opened;
    return { sessionId, client };
  }

  /** Another operator's interactive shell that answered once; `echo` measures its round trip. */
  async function bystander(
    cluster: string,
  ): Promise<{ client: TerminalClient; echo: (tag: string) => Promise<number> }> {
    const { client } = await podExec(cluster, { container: 'main' }, 'ops');
    let n = 0;
    const echo = async (tag: string): Promise<number> => {
      const t = `${tag}${++n}`;
      const started = Date.now();
      client.type(`echo ${t}-$((40+2))\n`);
      await client.waitText(`"${t}" from ${cluster}`, new RegExp(`${t}-42`), 15_000);
      return Date.now() - started;
    };
    await echo('ready');
    return { client, echo };
  }

  it.each(['local', 'local-agent'])(
    '%s: 64 MiB into a process that does not read keeps server RSS growth under 16 MiB, then arrives whole',
    async (cluster) => {
      const others = await Promise.all([bystander('local'), bystander('local-agent')]);
      const data = randomBytes(FLOOD_BYTES);
      const want = createHash('sha256').update(data).digest('hex');
      const marker = `/tmp/read-${cluster}-${suffix}`;
      const { sessionId, client } = await podExec(cluster, {
        container: 'main',
        tty: false,
        command: [
          'sh',
          '-c',
          `echo waiting; while [ ! -e ${marker} ]; do sleep 0.2; done; head -c ${FLOOD_BYTES} | sha256sum`,
        ],
      });
      await client.waitText('the process to start', /waiting/);
      const baseline = await settledRss(rig);

      let sent = 0;
      const pump = setInterval(() => {
        while (sent < FLOOD_BYTES && client.ws.bufferedAmount < CLIENT_QUEUE_BYTES) {
          client.ws.send(data.subarray(sent, sent + FRAME_BYTES));
          sent += FRAME_BYTES;
        }
      }, 5);
      let peak = baseline;
      const sampler = setInterval(() => {
        peak = Math.max(peak, rig.rss().server);
      }, 100);
      try {
        // Phase 1: nothing reads. The server takes what the exec path can hold (kernel socket
        // buffers, the tunnel window), then stops reading; the rest waits in the client.
        let last = -1;
        let stillSince = Date.now();
        const started = Date.now();
        await until(
          'the sender to be held back (or to have sent everything)',
          () => {
            if (sent !== last) {
              last = sent;
              stillSince = Date.now();
            }
            return sent >= FLOOD_BYTES || (Date.now() - stillSince > 3000 && Date.now() - started > 5000);
          },
          60_000,
        );
        // Meanwhile other sessions on this server (and on the same tunnel) answer.
        const roundTrips = [];
        for (const o of others) roundTrips.push(await o.echo('bystander'));
        await sleep(2000);
        const heldPeak = peak;
        process.stderr.write(
          `[backpressure] ${cluster}: while not read, the server took ${(sent / 2 ** 20).toFixed(1)} of 64 MiB; ` +
            `server RSS baseline ${baseline.toFixed(1)} MiB, peak ${heldPeak.toFixed(1)} MiB; bystander round trips ${roundTrips.join('/')} ms\n`,
        );
        expect(client.frame('closed'), JSON.stringify(client.frames)).toBeUndefined();
        expect(sent, 'the server stopped taking stdin the process does not read').toBeLessThan(FLOOD_BYTES);
        expect(heldPeak - baseline, 'server RSS growth (MiB) while the process does not read').toBeLessThan(
          RSS_GROWTH_MIB,
        );

        // Phase 2: the process reads; everything arrives, in order, once.
        await rig.sys.cluster.kubectlOk(['-n', ns, 'exec', 'sink', '-c', 'main', '--', 'touch', marker]);
        await until('the whole flood to be sent', () => sent >= FLOOD_BYTES, 120_000);
        await client.waitText('the checksum of what the process read', /[0-9a-f]{64} {2}-/, 120_000);
        await client.closed;
        process.stderr.write(
          `[backpressure] ${cluster}: server RSS peak over the whole transfer ${peak.toFixed(1)} MiB (baseline ${baseline.toFixed(1)})\n`,
        );
        expect(/([0-9a-f]{64}) {2}-/.exec(client.text())?.[1]).toBe(want);
        expect(client.frames).toContainEqual({ type: 'closed', reason: 'exit', exitCode: 0 });
        const close = await rig.closeEvent(sessionId);
        expect(close?.body).toMatchObject({ bytes_in: FLOOD_BYTES, exit_code: 0 });
      } finally {
        clearInterval(pump);
        clearInterval(sampler);
        client.ws.terminate();
      }
      for (const o of others) {
        await o.echo('after');
        o.client.control({ type: 'close' });
        await o.client.closed;
      }
    },
    300_000,
  );

  it('local-agent: a 2 MiB paste into a busy cluster shell arrives whole and the session stays up', async () => {
    const shell = await rig.openShell('local-agent', 'admin');
    const other = await bystander('local-agent');
    // Printable lines, as a paste is; the shell takes them raw once its command runs.
    const paste = Buffer.from(
      (
        randomBytes((PASTE_BYTES / 4) * 3)
          .toString('base64')
          .match(/.{1,76}/g) ?? []
      ).join('\n'),
    ).subarray(0, PASTE_BYTES);
    const want = createHash('sha256').update(paste).digest('hex');
    shell.client.type(
      `stty raw -echo; echo armed-$((40+2)); sleep 3; head -c ${PASTE_BYTES} | sha256sum; stty sane\n`,
    );
    await shell.client.waitText('the shell to be busy', /armed-42/);
    // The paste arrives while the shell sleeps: nothing reads it for 3 s.
    for (let at = 0; at < paste.length; at += FRAME_BYTES)
      shell.client.ws.send(paste.subarray(at, at + FRAME_BYTES));
    expect(await other.echo('during-paste')).toBeLessThan(15_000);
    await shell.client.waitText('the checksum of the paste', /[0-9a-f]{64} {2}-/, 60_000);
    expect(/([0-9a-f]{64}) {2}-/.exec(shell.client.text())?.[1]).toBe(want);
    expect(shell.client.frame('closed'), JSON.stringify(shell.client.frames)).toBeUndefined();
    await rig.echo(shell, 'still-up');
    expect(await rig.close(shell)).toMatchObject({ reason: 'client_close' });
    other.client.control({ type: 'close' });
    await other.client.closed;
  }, 180_000);
});
