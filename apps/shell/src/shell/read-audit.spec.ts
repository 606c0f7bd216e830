import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { bundledPrograms, run, tempDir } from '../testing/processes';
import { READ_AUDIT_EXIT, readAudit } from './read-audit';

let dir: string;
let shell: string;
let socketServer: Server | undefined;

beforeAll(async () => {
  dir = tempDir('read-audit');
  shell = (await bundledPrograms(dir))['periscope-shell'];
});

afterAll(() => {
  socketServer?.close();
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
/** A fresh directory standing for /tmp/periscope-shell. */
function auditDir(): string {
  const d = join(dir, `audit-${++n}`);
  mkdirSync(d);
  return d;
}

const LINE = '{"timestamp":"2026-01-01T00:00:00.000Z","pid":7,"argv":["kubectl","get","ns"],"exit_code":0}\n';

describe('readAudit', () => {
  it('reads a regular file up to the cap', () => {
    const f = join(auditDir(), 'audit.jsonl');
    writeFileSync(f, LINE.repeat(3));
    const all = readAudit(f, 10_000);
    expect(all).toEqual({ code: READ_AUDIT_EXIT.ok, bytes: Buffer.from(LINE.repeat(3)) });
    const cut = readAudit(f, 10);
    expect(cut).toEqual({ code: READ_AUDIT_EXIT.ok, bytes: Buffer.from(LINE.slice(0, 10)) });
  });

  it('says when there is no log (exit 66)', () => {
    expect(readAudit(join(auditDir(), 'audit.jsonl'), 100)).toMatchObject({
      code: READ_AUDIT_EXIT.missing,
      message: expect.stringContaining('no command log'),
    });
  });

  it('refuses a FIFO at once instead of waiting for a writer', () => {
    const f = join(auditDir(), 'audit.jsonl');
    execFileSync('mkfifo', [f]);
    const started = Date.now();
    expect(readAudit(f, 100)).toMatchObject({
      code: READ_AUDIT_EXIT.refused,
      message: `refusing ${f}: it is a FIFO`,
    });
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('refuses a symlink, even to a readable regular file', () => {
    const d = auditDir();
    const secret = join(d, 'kubeconfig');
    writeFileSync(secret, 'token: very-secret\n');
    const f = join(d, 'audit.jsonl');
    symlinkSync(secret, f);
    expect(readAudit(f, 100)).toMatchObject({
      code: READ_AUDIT_EXIT.refused,
      message: `refusing ${f}: it is a symbolic link`,
    });
  });

  it('refuses a file reached through a symlinked directory', () => {
    const real = auditDir();
    writeFileSync(join(real, 'audit.jsonl'), 'token: very-secret\n');
    const link = join(dir, `linked-${++n}`);
    symlinkSync(real, link);
    expect(readAudit(join(link, 'audit.jsonl'), 100)).toMatchObject({
      code: READ_AUDIT_EXIT.refused,
      message: expect.stringContaining('reached through a symbolic link'),
    });
  });

  it('falls back to resolving the directory when /proc is not there', () => {
    const real = auditDir();
    writeFileSync(join(real, 'audit.jsonl'), LINE);
    const link = join(dir, `linked-${++n}`);
    symlinkSync(real, link);
    const noProc = join(dir, 'no-proc');
    expect(readAudit(join(link, 'audit.jsonl'), 100, { procDir: noProc }).code).toBe(READ_AUDIT_EXIT.refused);
    expect(readAudit(join(real, 'audit.jsonl'), 1000, { procDir: noProc })).toEqual({
      code: READ_AUDIT_EXIT.ok,
      bytes: Buffer.from(LINE),
    });
  });

  it('refuses a directory and a socket', async () => {
    const d = auditDir();
    const asDir = join(d, 'audit.jsonl');
    mkdirSync(asDir);
    expect(readAudit(asDir, 100)).toMatchObject({
      code: READ_AUDIT_EXIT.refused,
      message: expect.stringContaining('a directory'),
    });
    const sock = join(auditDir(), 'audit.jsonl');
    socketServer = createServer();
    await new Promise<void>((r) => socketServer?.listen(sock, r));
    expect(readAudit(sock, 100).code).toBe(READ_AUDIT_EXIT.refused);
  });

  it('reads only the cap of a 1 GiB (sparse) file, quickly', () => {
    const f = join(auditDir(), 'audit.jsonl');
    writeFileSync(f, '');
    truncateSync(f, 1024 * 1024 * 1024);
    const started = Date.now();
    const r = readAudit(f, 1024 * 1024 + 1);
    expect(r.code).toBe(READ_AUDIT_EXIT.ok);
    if (r.code === READ_AUDIT_EXIT.ok) expect(r.bytes.length).toBe(1024 * 1024 + 1);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('refuses relative or unnormalized paths and bad sizes', () => {
    expect(readAudit('audit.jsonl', 10).code).toBe(READ_AUDIT_EXIT.usage);
    expect(readAudit('/tmp/../etc/passwd', 10).code).toBe(READ_AUDIT_EXIT.usage);
    expect(readAudit('/tmp/a', 0).code).toBe(READ_AUDIT_EXIT.usage);
  });
});

describe('periscope-shell read-audit (the bundled program)', () => {
  it('prints the log on stdout and exits 0, without a session environment', async () => {
    const f = join(auditDir(), 'audit.jsonl');
    writeFileSync(f, LINE.repeat(2));
    const r = await run(shell, ['read-audit', f, '100000'], { env: { PATH: process.env['PATH'] } });
    expect(r).toMatchObject({ code: 0, stdout: LINE.repeat(2), stderr: '' });
  });

  it('exits 65 with the reason for a FIFO and 66 for no log', async () => {
    const d = auditDir();
    const f = join(d, 'audit.jsonl');
    execFileSync('mkfifo', [f]);
    const fifo = await run(shell, ['read-audit', f, '100'], { env: {}, timeoutMs: 10_000 });
    expect(fifo).toMatchObject({
      code: 65,
      stdout: '',
      stderr: `periscope-shell: read-audit: refusing ${f}: it is a FIFO\n`,
    });
    const none = await run(shell, ['read-audit', join(d, 'nothing'), '100'], { env: {} });
    expect(none.code).toBe(66);
  });

  it('writes a large capped read completely to a pipe', async () => {
    const f = join(auditDir(), 'audit.jsonl');
    writeFileSync(f, 'x'.repeat(3 * 1024 * 1024));
    const r = await run(shell, ['read-audit', f, String(2 * 1024 * 1024 + 1)], { env: {} });
    expect(r.code).toBe(0);
    expect(r.stdout.length).toBe(2 * 1024 * 1024 + 1);
  });

  it('refuses bad arguments with the usage (exit 64)', async () => {
    for (const args of [['read-audit'], ['read-audit', '/tmp/a'], ['read-audit', '/tmp/a', 'lots']]) {
      const r = await run(shell, args, { env: {} });
      expect(r.code).toBe(64);
      expect(r.stderr).toMatch(/^usage: /);
    }
  });
});
