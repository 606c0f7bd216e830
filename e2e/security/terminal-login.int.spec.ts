import 'reflect-metadata';

import type { NestExpressApplication } from '@nestjs/platform-express';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { AuditStore } from '../../apps/server/src/audit/audit-store';
import { TerminalSessions } from '../../apps/server/src/terminal/terminal-sessions.service';
import { TestClusterClient } from '../k8s/cluster';
import { freePort } from '../k8s/ports';
import { signIn, startIdp, type Browser, type Idp } from '../support/oidc-idp';
import { TerminalClient } from '../support/terminal-client';
import { startExecPod, startTestServer, testServerConfig, writeConfigDir } from '../support/test-server';
import { until } from '../support/wait';

const cluster = new TestClusterClient(inject('cluster'));
const suffix = Date.now().toString(36);
const ns = `login-${suffix}`;

/*
 * Live terminals do not outlive their sign-in (issue 17 item 7), against a real OpenID provider
 * (oidc-provider), the real server and pod exec into a real pod: signing out ends that sign-in's
 * terminals (and only those); a token refresh that lowers the tier ends the sessions it no longer
 * admits, and keeps those it still does; a resume re-checks who is resuming and with what tier.
 */
describe('terminals follow their sign-in (sign-out, tier change at refresh, resume)', () => {
  let idp: Idp;
  let server: NestExpressApplication;
  let periscope: string;

  beforeAll(async () => {
    // Every tier may exec here: what ends a session below is Periscope, not RBAC.
    await startExecPod(
      cluster,
      ns,
      ['read', 'maintain', 'admin'].map((tier) => ({ tier, role: 'cluster-admin', name: `tier-${tier}` })),
    );

    const port = await freePort();
    periscope = `http://127.0.0.1:${String(port)}`;
    idp = await startIdp(periscope, {
      alice: { email: 'alice@example.com', groups: ['sre'] },
      carol: { email: 'carol@example.com', groups: ['sre'] },
      dave: { email: 'dave@example.com', groups: ['developers'] },
      erin: { email: 'erin@example.com', groups: ['sre'] },
      mallory: { email: 'mallory@example.com', groups: ['sre'] },
    });
    const dir = writeConfigDir('login', cluster.info.adminKubeconfig, { oidc: idp });
    ({ server } = await startTestServer(
      testServerConfig(dir, {
        PERISCOPE_AUTH_MODE: 'oidc',
        PERISCOPE_OIDC_CLIENT_SECRET: idp.clientSecret,
        PERISCOPE_CLUSTER_SHELL_ENABLED: 'false',
        PERISCOPE_RESUME_GRACE_SECONDS: '60',
        PERISCOPE_PUBLIC_URL: periscope,
      }),
      port,
    ));
  });

  afterAll(async () => {
    await (server as NestExpressApplication | undefined)?.close();
    await (idp as Idp | undefined)?.stop();
    await cluster.kubectl(['delete', 'namespace', ns, '--wait=false']);
  });

  const headers = (b: Browser): Record<string, string> => ({
    cookie: b.cookie(periscope),
    origin: periscope,
  });

  /** A pod exec of `sh` in the pod, opened as the browser's sign-in; answers once the shell echoes. */
  async function openShell(b: Browser): Promise<{ sessionId: string; client: TerminalClient }> {
    const res = await fetch(`${periscope}/api/clusters/lab/pods/${ns}/app/exec/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers(b) },
      body: JSON.stringify({ container: 'main', command: ['sh'] }),
    });
    expect(res.status, await res.clone().text()).toBe(201);
    const { socketPath, sessionId } = (await res.json()) as { socketPath: string; sessionId: string };
    const client = new TerminalClient(`${periscope.replace('http', 'ws')}${socketPath}`, headers(b));
    await client.opened;
    await echoes(client, 'first');
    return { sessionId, client };
  }

  /** Types a command into the shell and waits for its answer. */
  async function echoes(client: TerminalClient, tag: string): Promise<void> {
    client.type(`echo ${tag}-$((6*7))\n`);
    await client.waitText(`the ${tag} echo`, new RegExp(`${tag}-42`));
  }

  /** Waits (with a deadline) for the socket to close; answers its close code. */
  const closed = (client: TerminalClient, what: string): Promise<number> =>
    until(what, () => client.closeCode, 20_000);

  const closeReason = (sessionId: string): unknown =>
    server
      .get(AuditStore)
      .bySession(sessionId)
      .find((e) => e.verb === 'exec_close')?.body['close_reason'];

  it("sign-out ends that sign-in's terminals with E_SIGNED_OUT, and only those", async () => {
    const laptop = await signIn(periscope, idp, 'alice');
    const desktop = await signIn(periscope, idp, 'alice');
    const onLaptop = await openShell(laptop);
    const onDesktop = await openShell(desktop);

    const out = await fetch(`${periscope}/api/auth/logout`, { method: 'POST', headers: headers(laptop) });
    expect(out.status).toBe(200);
    await closed(onLaptop.client, 'the terminal of the signed-out sign-in to close');
    expect(onLaptop.client.frames).toContainEqual(
      expect.objectContaining({ type: 'error', code: 'E_SIGNED_OUT', retryable: false }),
    );
    expect(String(onLaptop.client.frame('error')?.['message'])).toMatch(/you signed out.*sign in again/);
    expect(onLaptop.client.frames).toContainEqual({ type: 'closed', reason: 'signed_out' });
    await until('the audit close', () => closeReason(onLaptop.sessionId) === 'signed_out');

    // The other sign-in of the same person keeps its terminal.
    await echoes(onDesktop.client, 'desktop');
    onDesktop.client.control({ type: 'close' });
    await closed(onDesktop.client, 'the desktop terminal to close');
  });

  it('a refresh that lowers the tier ends the sessions it no longer admits; a raised tier keeps them', async () => {
    // Short-lived provider tokens: every request after they expire refreshes and re-reads groups.
    idp.setTokenTtl(5);
    try {
      const lowered = await signIn(periscope, idp, 'carol'); // maintain
      const raised = await signIn(periscope, idp, 'dave'); // read
      const carol = await openShell(lowered);
      const dave = await openShell(raised);
      idp.accounts.set('carol', { email: 'carol@example.com', groups: ['developers'] }); // → read
      idp.accounts.set('dave', { email: 'dave@example.com', groups: ['sre'] }); // → maintain
      for (const [b, tier] of [
        [lowered, 'read'],
        [raised, 'maintain'],
      ] as const)
        await until(
          `the refresh to see tier ${tier}`,
          async () => {
            const me = (await (
              await fetch(`${periscope}/api/auth/whoami`, { headers: headers(b) })
            ).json()) as {
              tier: string;
            };
            if (me.tier === tier) return true;
            await new Promise((r) => setTimeout(r, 250));
            return false;
          },
          30_000,
        );
      await closed(carol.client, 'the lowered terminal to close');
      expect(carol.client.frames).toContainEqual(
        expect.objectContaining({ type: 'error', code: 'E_TIER_CHANGED', retryable: false }),
      );
      expect(String(carol.client.frame('error')?.['message'])).toMatch(/from maintain to read/);
      expect(carol.client.frames).toContainEqual({ type: 'closed', reason: 'tier_changed' });
      await until('the audit close', () => closeReason(carol.sessionId) === 'tier_changed');
      // A raised tier: the exec keeps the (smaller) rights it was opened with, and goes on.
      await echoes(dave.client, 'raised');
      dave.client.control({ type: 'close' });
      await closed(dave.client, 'the raised terminal to close');
    } finally {
      idp.setTokenTtl(3600);
    }
  });

  it('resume re-checks the person and the tier; the resumed session follows the new sign-in', async () => {
    const first = await signIn(periscope, idp, 'erin'); // maintain
    const { sessionId, client } = await openShell(first);
    client.ws.terminate(); // a network blip
    await closed(client, 'the dropped socket to close');
    await until(
      'the session to wait for a resume',
      () => server.get(TerminalSessions).get(sessionId)?.state === 'detached',
    );
    const attach = (b: Browser): TerminalClient =>
      new TerminalClient(
        `${periscope.replace('http', 'ws')}/api/sessions/${sessionId}/attach?received=${client.bytes}`,
        headers(b),
      );

    // Someone else cannot take it over.
    const other = attach(await signIn(periscope, idp, 'mallory'));
    expect(await closed(other, "mallory's resume to be refused")).toBe(4410);
    expect(other.frame('error')).toMatchObject({ code: 'E_SESSION_GONE' });

    // The same person from a second sign-in with the same tier resumes it; it is now that one's.
    const second = await signIn(periscope, idp, 'erin');
    const back = attach(second);
    await back.opened;
    await until('the hello of the resumed session', () => back.frame('hello'));
    await echoes(back, 'resumed');
    const outOfFirst = await fetch(`${periscope}/api/auth/logout`, {
      method: 'POST',
      headers: headers(first),
    });
    expect(outOfFirst.status).toBe(200);
    await echoes(back, 'still'); // signing out of the first sign-in no longer touches it
    back.ws.terminate();
    await closed(back, 'the resumed socket to drop');
    await until('detached again', () => server.get(TerminalSessions).get(sessionId)?.state === 'detached');

    // The same person, signed in again with a lower tier: the resume is refused and the session ends.
    idp.accounts.set('erin', { email: 'erin@example.com', groups: ['developers'] });
    const lower = attach(await signIn(periscope, idp, 'erin'));
    expect(await closed(lower, 'the lower-tier resume to be refused')).toBe(4410);
    expect(lower.frame('error')).toMatchObject({ code: 'E_TIER_CHANGED', retryable: false });
    expect(String(lower.frame('error')?.['message'])).toMatch(/from maintain to read/);
    await until('the audit close', () => closeReason(sessionId) === 'tier_changed');
    expect(server.get(TerminalSessions).get(sessionId)).toBeUndefined();
  });
});
