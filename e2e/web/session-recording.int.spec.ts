/**
 * Session recording, replay and live watch in the browser, against the whole local system: an
 * operator's cluster shell is recorded on the server; an admin replays it from the audit page
 * (the same text, a jump to the second kubectl command from the timeline, search in the output,
 * the .cast download); a read-tier user is refused (403 with the reason); a modified recording
 * is detected on read and the page says so. Live: an admin watches a running shell read-only,
 * sees the operator's typing within a second, cannot type into it, both see the banner, and the
 * watch's start and end are audited.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { RunningSystem } from '../system/system';
import {
  hasPrompt,
  newPage,
  screenshot,
  signIn,
  terminalText,
  typeLine,
  waitPill,
  waitTerminal,
} from './browser';
import { OncallRig } from './oncall-rig';

interface Answer {
  status: number;
  body: unknown;
  headers: Record<string, string>;
}

/** A same-origin API call from the page (its sign-in cookie). */
function call(page: Page, path: string): Promise<Answer> {
  return page.evaluate(async (path) => {
    const res = await fetch(path);
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // asciicast is JSON lines: kept as text
    }
    return { status: res.status, body, headers: Object.fromEntries(res.headers.entries()) };
  }, path);
}

interface AuditRow {
  verb: string;
  actor: string;
  outcome: string;
  body: Record<string, unknown>;
}

async function auditOf(page: Page, sessionId: string): Promise<AuditRow[]> {
  const a = await call(page, `/api/audit?session_id=${sessionId}&limit=100`);
  return (a.body as { events: AuditRow[] }).events;
}

/** Waits for an audit row of the session that `test` accepts (the close is written at teardown). */
async function waitAudit(page: Page, sessionId: string, test: (e: AuditRow) => boolean): Promise<AuditRow> {
  const end = Date.now() + 30_000;
  for (;;) {
    const hit = (await auditOf(page, sessionId)).find(test);
    if (hit) return hit;
    if (Date.now() > end) throw new Error(`no matching audit row for session ${sessionId} within 30 s`);
    await page.waitForTimeout(300);
  }
}

function replayText(page: Page): Promise<string> {
  return page.evaluate(
    () => (globalThis as { __periscopeReplay?: { text: () => string } }).__periscopeReplay?.text() ?? '',
  );
}

function watchText(page: Page): Promise<string> {
  return page.evaluate(
    () => (globalThis as { __periscopeWatch?: { text: () => string } }).__periscopeWatch?.text() ?? '',
  );
}

async function waitText(
  what: string,
  read: () => Promise<string>,
  test: (t: string) => boolean,
  timeoutMs = 20_000,
): Promise<string> {
  const end = Date.now() + timeoutMs;
  let t = '';
  for (;;) {
    t = await read();
    if (test(t)) return t;
    if (Date.now() > end)
      throw new Error(`timed out waiting for ${what}; the screen shows:\n${t.slice(-1500)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function openShell(page: Page): Promise<string> {
  await page.goto(`${page.url().replace(/\/[^/]*$/, '')}/clusters/local`);
  await page.getByRole('button', { name: 'Shell', exact: true }).click();
  await waitTerminal(page, 'the prompt', hasPrompt, 90_000);
  const id = await page.evaluate(async () => {
    const r = await fetch('/api/sessions');
    const b = (await r.json()) as { sessions: { sessionId: string }[] };
    return b.sessions[0]?.sessionId ?? '';
  });
  expect(id).toMatch(/^[0-9a-f-]{36}$/);
  return id;
}

describe('session recording, replay and live watch', () => {
  let browser: Browser;
  let system: RunningSystem;
  let admin: Page;
  let oncall: Page;
  let reader: Page;
  let recorded = '';
  let operatorText = '';

  const rig = new OncallRig();

  beforeAll(async () => {
    ({ browser, system, admin, oncall, reader } = await rig.start('web-session-recording'));
  });

  afterAll(() => rig.stop());

  it('records a shell; an admin replays it from the audit page: same text, timeline jump, search, download', async () => {
    recorded = await openShell(oncall);
    await typeLine(oncall, 'echo first-$((20+1))');
    await waitTerminal(oncall, 'the first echo', (t) => t.includes('first-21'));
    await typeLine(oncall, 'kubectl auth whoami');
    await waitTerminal(oncall, 'whoami', (t) => /Username\s+oncall/.test(t), 60_000);
    await typeLine(oncall, 'kubectl get namespaces');
    await waitTerminal(oncall, 'the namespaces', (t) => t.includes('kube-system'), 60_000);
    // a pause, so the jump to the second command lands clearly before what follows
    await oncall.waitForTimeout(1500);
    await typeLine(oncall, 'echo zebra-$((1+1))');
    await waitTerminal(oncall, 'the zebra', (t) => t.includes('zebra-2'));
    operatorText = await terminalText(oncall);
    await typeLine(oncall, 'exit');
    await waitPill(oncall, /^closed · exit 0$/, 60_000);

    const close = await waitAudit(admin, recorded, (e) => e.verb === 'cluster_shell_close');
    expect(close.body).toMatchObject({ recording_id: recorded, recording_mode: 'output' });
    expect(close.body['recording_sha256']).toMatch(/^[0-9a-f]{64}$/);
    expect(close.body['recording_bytes']).toBeGreaterThan(100);

    // From the audit page: the close record's row has the replay link.
    await admin.getByRole('navigation', { name: 'main' }).getByRole('link', { name: 'Audit' }).click();
    await admin.getByLabel('verb').fill('cluster_shell_close');
    await admin.getByRole('button', { name: 'apply' }).click();
    await admin.getByRole('link', { name: `replay session ${recorded}` }).click();
    await admin.getByTestId('replay-screen').waitFor();

    // Seek to the end: the same text the operator saw.
    const seek = admin.getByRole('slider', { name: 'seek' });
    const max = Number(await seek.getAttribute('max'));
    expect(max).toBeGreaterThan(1);
    await seek.fill(String(max));
    const full = await waitText(
      'the full replay',
      () => replayText(admin),
      (t) => t.includes('zebra-2'),
    );
    for (const line of operatorText.split('\n').filter((l) => l.trim() !== ''))
      expect(full, 'every line the operator saw is in the replay').toContain(line.trimEnd());
    await screenshot(admin, 'replay-end');

    // The timeline: jump to the second kubectl command.
    const timeline = admin.getByRole('list', { name: 'command timeline' });
    const items = timeline.getByRole('button');
    await items.nth(1).waitFor();
    expect(await items.nth(0).textContent()).toContain('kubectl auth whoami');
    expect(await items.nth(1).textContent()).toContain('kubectl get namespaces');
    await items.nth(1).click();
    const atSecond = await waitText(
      'the screen at the second command',
      () => replayText(admin),
      (t) => t.includes('kubectl get namespaces') && !t.includes('zebra'),
    );
    expect(atSecond).toMatch(/Username\s+oncall/);

    // Search finds a printed word and jumps to it.
    await admin.getByLabel('search in the output').fill('zebra-2');
    await admin.getByRole('button', { name: 'search', exact: true }).click();
    const matches = admin.getByTestId('replay-matches');
    await matches.waitFor();
    expect(await matches.textContent()).toContain('1 match');
    await waitText(
      'the search jump',
      () => replayText(admin),
      (t) => t.includes('zebra-2'),
    );

    // Play and pause work from the start at 16×.
    await seek.fill('0');
    await admin.getByLabel('speed').selectOption('16');
    await admin.getByRole('button', { name: 'play', exact: true }).click();
    await admin.getByRole('button', { name: 'pause', exact: true }).waitFor();
    await waitText(
      'playback',
      () => replayText(admin),
      (t) => t.includes('first-21'),
    );

    // The download: the same bytes as an attachment, asciicast v2.
    const dl = await call(admin, `/api/sessions/${recorded}/recording?download=1`);
    expect(dl.status).toBe(200);
    expect(dl.headers['content-disposition']).toBe(`attachment; filename="session-${recorded}.cast"`);
    expect(dl.headers['content-type']).toContain('application/x-asciicast');
    const first = String(dl.body).split('\n')[0] ?? '';
    expect(JSON.parse(first)).toMatchObject({ version: 2 });

    // Every replay is audited.
    const replays = (await auditOf(admin, recorded)).filter((e) => e.verb === 'session_replay');
    expect(replays.length).toBeGreaterThanOrEqual(2);
    expect(replays.every((e) => e.actor === 'admin' && e.outcome === 'ok')).toBe(true);
  });

  it('the operator may replay their own session; a read-tier user is refused with the reason', async () => {
    expect((await call(oncall, `/api/sessions/${recorded}/recording`)).status).toBe(200);
    const refused = await call(reader, `/api/sessions/${recorded}/recording`);
    expect(refused.status).toBe(403);
    expect(refused.body).toMatchObject({ error: 'E_FORBIDDEN' });
    expect((refused.body as { message: string }).message).toContain(
      "only the session's own operator, auditors and admins may replay it",
    );
    await reader.goto(`${system.url}/sessions/${recorded}/replay`);
    const shown = reader.getByTestId('replay-error');
    await shown.waitFor();
    expect(await shown.textContent()).toContain('E_FORBIDDEN');
    // the refusal is audited too (the admin sees every event)
    const denied = await waitAudit(
      admin,
      recorded,
      (e) => e.verb === 'session_replay' && e.actor === 'reader',
    );
    expect(denied.outcome).toBe('error');
  });

  it('a modified recording is detected on read, and the replay page says so', async () => {
    const file = join(system.dataDir, 'recordings', `${recorded}.cast`);
    const text = readFileSync(file, 'utf8');
    writeFileSync(file, text.replace('zebra-2', 'zebra-3'));
    const r = await call(admin, `/api/sessions/${recorded}/recording`);
    expect(r.status).toBe(409);
    expect(r.body).toMatchObject({ error: 'E_RECORDING_INTEGRITY' });
    await admin.goto(`${system.url}/sessions/${recorded}/replay`);
    const alert = admin.getByTestId('replay-integrity');
    await alert.waitFor();
    expect(await alert.textContent()).toContain('Integrity check failed');
    await screenshot(admin, 'replay-integrity');
    const failed = await waitAudit(
      admin,
      recorded,
      (e) => e.verb === 'session_replay' && e.body['integrity'] === 'failed',
    );
    expect(failed.outcome).toBe('error');
  });

  it('an admin watches a live shell read-only: typing within 1 s, no input, banners, audited', async () => {
    await oncall.goto(system.url);
    const live = await openShell(oncall);
    await admin.goto(`${system.url}/sessions`);
    await admin
      .getByRole('link', { name: new RegExp(`^watch the session of oncall .*${live.slice(0, 8)}`) })
      .click();
    const watcherBanner = admin.getByTestId('watch-banner');
    await watcherBanner.filter({ hasText: 'admin' }).waitFor();
    const operatorBanner = oncall.getByTestId('watch-banner');
    await operatorBanner.filter({ hasText: 'admin' }).waitFor({ timeout: 10_000 });
    expect(await operatorBanner.textContent()).toContain('is watching this session live');
    // the watcher starts with what the operator already has on screen
    await waitText('the prompt in the watch', () => watchText(admin), hasPrompt);

    // The operator types; the watcher sees it within a second.
    await oncall.locator('.term-view:not([hidden]) .term-host').click();
    await oncall.keyboard.type('echo seen-live-$((6*7))', { delay: 5 });
    const typedAt = Date.now();
    await waitText(
      'the typed line in the watch',
      () => watchText(admin),
      (t) => t.includes('echo seen-live-'),
      1000,
    );
    expect(Date.now() - typedAt).toBeLessThanOrEqual(1000);
    await oncall.keyboard.press('Enter');
    await waitText(
      'the output in the watch',
      () => watchText(admin),
      (t) => t.includes('seen-live-42'),
      5000,
    );
    await screenshot(admin, 'watch');
    await screenshot(oncall, 'watched-operator');

    // The watcher's keystrokes are refused and never reach the session.
    await admin.getByTestId('watch-screen').click();
    await admin.keyboard.type('echo intruder');
    await admin.getByTestId('watch-notice').filter({ hasText: 'E_READ_ONLY' }).waitFor();
    await oncall.waitForTimeout(500);
    expect(await terminalText(oncall)).not.toContain('intruder');

    // The watcher leaves: the operator's banner goes, and start and end are audited.
    await admin.goto(`${system.url}/sessions`);
    await operatorBanner.waitFor({ state: 'detached', timeout: 10_000 });
    const start = await waitAudit(admin, live, (e) => e.verb === 'session_watch_start');
    expect(start).toMatchObject({ actor: 'admin', body: { owner: 'oncall', watcher: 'admin' } });
    const end = await waitAudit(admin, live, (e) => e.verb === 'session_watch_end');
    expect(end.body).toMatchObject({ watcher: 'admin', end_reason: 'watcher_left' });
    expect(end.body['refused_input_frames']).toBeGreaterThan(0);
    await typeLine(oncall, 'exit');
    await waitPill(oncall, /^closed · exit 0$/, 60_000);
  });

  it('64 MiB of output: the recording has exactly the bytes the browser received (SHA-256)', async () => {
    const bulk = await newPage(browser);
    try {
      await signIn(bulk, system.url, 'oncall');
      // Every binary frame the page's terminal sockets receive, hashed as it arrives.
      const got = createHash('sha256');
      let gotBytes = 0;
      bulk.on('websocket', (ws) => {
        if (!ws.url().includes('/shell')) return;
        ws.on('framereceived', ({ payload }) => {
          if (typeof payload === 'string') return;
          got.update(payload);
          gotBytes += payload.length;
        });
      });
      const id = await openShell(bulk);
      const line = 'periscope-64MiB-recording-check-0123456789abcdefghijklmnopqrstuvwxyz';
      await typeLine(bulk, `yes ${line} | head -c ${64 * 1024 * 1024}; echo; echo BULK-$((40+2))-DONE`);
      await waitTerminal(bulk, 'the end of the bulk output', (t) => t.includes('BULK-42-DONE'), 200_000);
      await typeLine(bulk, 'exit');
      await waitPill(bulk, /^closed · exit 0$/, 60_000);
      await waitAudit(admin, id, (e) => e.verb === 'cluster_shell_close');
      const cast = await bulk.evaluate(
        async (path) => (await fetch(path)).text(),
        `/api/sessions/${id}/recording`,
      );
      const out = createHash('sha256');
      let outBytes = 0;
      for (const l of cast.split('\n').slice(1)) {
        if (l === '') continue;
        const [, code, data] = JSON.parse(l) as [number, string, string];
        if (code !== 'o') continue;
        const b = Buffer.from(data, 'utf8');
        out.update(b);
        outBytes += b.length;
      }
      expect(gotBytes).toBeGreaterThan(64 * 1024 * 1024);
      expect(outBytes).toBe(gotBytes);
      expect(out.digest('hex')).toBe(got.digest('hex'));
    } finally {
      await bulk.context().close();
    }
  }, 400_000);
});
