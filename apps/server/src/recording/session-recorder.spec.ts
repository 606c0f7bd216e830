import { createHash } from 'node:crypto';
import { closeSync, constants as fsConstants, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { ECHO_OFF_MARKER, parseCast, TRUNCATED_MARKER } from './asciicast';
import { InputLines, redactLine, shellWords, visibleText, type InputDecision } from './input-lines';
import { FileRecordingStore, type RecordingSink, type RecordingStore } from './recording-store';
import { BATCH_MS, COALESCE_MS, SessionRecorder } from './session-recorder';

const ID = '0b7c8d2e-1f3a-4b5c-8d9e-0a1b2c3d4e5f';

/**
 * `sink`: the file store as it is (the encoder thread writes the file itself, through its fd and,
 * where the filesystem allows it, an O_DIRECT one), its sinks with the fd only (`fd-only`), with a
 * direct descriptor that refuses every write (`bad-direct`: a read-only one), without the fd (the
 * bytes come back to be written through write(), as for PostgreSQL), or with an fd the thread
 * cannot write to (a read-only one).
 */
function setup(
  opts: {
    mode?: 'output' | 'output+input';
    maxBytes?: number;
    sink?: 'fd' | 'fd-only' | 'bad-direct' | 'no-fd' | 'read-only-fd';
  } = {},
) {
  const dir = mkdtempSync(join(tmpdir(), 'periscope-rec-'));
  const store = new FileRecordingStore(dir);
  const fds: number[] = [];
  const wrapped: RecordingStore =
    (opts.sink ?? 'fd') === 'fd'
      ? store
      : Object.assign(Object.create(store) as FileRecordingStore, {
          create: async (id: string): Promise<RecordingSink> => {
            const sink = await store.create(id);
            const base = { write: (c: Buffer) => sink.write(c), close: () => sink.close() };
            if (opts.sink === 'no-fd') return base;
            if (opts.sink === 'fd-only') return { ...base, fd: sink.fd as number };
            if (opts.sink === 'bad-direct') {
              const ro = openSync(join(dir, `${id}.cast`), 'r');
              fds.push(ro);
              return { ...base, fd: sink.fd as number, directFd: ro };
            }
            const fd = openSync(join(dir, `${id}.cast`), 'r');
            fds.push(fd);
            return { ...base, fd };
          },
        });
  let now = 1_000_000;
  const rec = new SessionRecorder(wrapped, {
    id: ID,
    mode: opts.mode ?? 'output',
    maxBytes: opts.maxBytes ?? 1024 * 1024,
    startedAt: now,
    now: () => now,
    header: {
      version: 2,
      width: 80,
      height: 24,
      timestamp: 1000,
      title: 't',
      env: { TERM: 'xterm-256color' },
    },
  });
  return {
    rec,
    advance: (ms: number) => {
      now += ms;
    },
    file: () => readFileSync(join(dir, `${ID}.cast`)),
    store,
    closeFds: () => {
      for (const fd of fds) closeSync(fd);
    },
  };
}

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

describe('SessionRecorder', () => {
  it('writes asciicast v2 with output, resize and times; size and SHA-256 are those of the file', async () => {
    const r = setup();
    r.rec.resize(120, 40);
    r.advance(250);
    r.rec.output(enc('hello '));
    // a UTF-8 character split across two chunks arrives whole
    const euro = Buffer.from('€');
    r.rec.output(euro.subarray(0, 1));
    r.advance(250);
    r.rec.output(euro.subarray(1));
    const s = await r.rec.finish();
    const file = r.file();
    expect(s.bytes).toBe(file.length);
    expect(s.sha256).toBe(createHash('sha256').update(file).digest('hex'));
    expect(s.truncated).toBe(false);
    const cast = parseCast(file.toString('utf8'));
    expect(cast.header).toMatchObject({ version: 2, width: 80, height: 24 });
    expect(cast.bad).toBe(0);
    expect(cast.events).toEqual([
      { t: 0, code: 'r', data: '120x40' },
      { t: 0.25, code: 'o', data: 'hello ' },
      { t: 0.5, code: 'o', data: '€' },
    ]);
  });

  it('stops at the size cap with a truncated marker; the session output beyond is not written', async () => {
    const r = setup({ maxBytes: 4096 });
    for (let i = 0; i < 100; i++) r.rec.output(enc(`line ${i} ${'x'.repeat(80)}\r\n`));
    const s = await r.rec.finish();
    const file = r.file();
    expect(file.length).toBeLessThanOrEqual(4096);
    expect(s).toMatchObject({ truncated: true, bytes: file.length });
    const cast = parseCast(file.toString('utf8'));
    expect(cast.events.at(-1)).toMatchObject({ code: 'm', data: TRUNCATED_MARKER });
    expect(cast.events.filter((e) => e.code === 'm')).toHaveLength(1);
  });

  it('records echoed input lines redacted, and a marker instead of a line typed with echo off', async () => {
    const r = setup({ mode: 'output+input' });
    // echoed, with a secret value
    const line = 'kubectl create secret generic db --from-literal=password=hunter2';
    for (const ch of line) {
      r.rec.input(enc(ch));
      r.rec.output(enc(ch));
    }
    r.rec.input(enc('\r'));
    r.rec.output(enc('\r\nsecret/db created\r\n$ sudo -v\r\nPassword: '));
    // typed at a password prompt: nothing echoed
    r.rec.input(enc('s3cr3t-pw\r'));
    r.advance(600);
    r.rec.output(enc('\r\n$ '));
    const s = await r.rec.finish();
    const text = r.file().toString('utf8');
    // never typed into the file: the password was not echoed, and input lines are redacted (the
    // terminal's echo of the secret value is output, recorded as the screen showed it)
    expect(text).not.toContain('s3cr3t-pw');
    const events = parseCast(text).events;
    const inputs = events.filter((e) => e.code === 'i').map((e) => e.data);
    expect(inputs.join('')).not.toContain('hunter2');
    expect(inputs).toEqual(['kubectl create secret generic db --from-literal=password=***\r']);
    expect(events.filter((e) => e.code === 'm').map((e) => e.data)).toEqual([ECHO_OFF_MARKER]);
    expect(s.error).toBeUndefined();
  });

  it('mode output never writes input', async () => {
    const r = setup({ mode: 'output' });
    r.rec.input(enc('ls\r'));
    r.rec.output(enc('ls\r\n'));
    await r.rec.finish();
    expect(parseCast(r.file().toString('utf8')).events.map((e) => e.code)).toEqual(['o']);
  });

  it('hands batches over in the shared slots and, while both are with the encoder thread, in memory of their own: the same bytes either way', async () => {
    const r = setup({ maxBytes: 64 * 1024 * 1024 });
    // 5 MiB without yielding: two batches fill the two slots (the thread cannot answer meanwhile),
    // the rest goes in memory of its own; then more after the thread has answered (slots again),
    // and one read larger than a slot
    const parts: string[] = [];
    const put = (text: string): void => {
      parts.push(text);
      r.rec.output(enc(text));
    };
    for (let i = 0; i < 160; i++)
      put(`${i} ${'slot-bench-0123456789 \u00e9 '.repeat(1024)}\r\n`.slice(0, 32 * 1024));
    await new Promise((resolve) => setTimeout(resolve, BATCH_MS * 3));
    for (let i = 0; i < 40; i++) put(`later ${i} ${'x'.repeat(20_000)}\r\n`);
    put('y'.repeat(1536 * 1024));
    const s = await r.rec.finish();
    const file = r.file();
    expect(s.error).toBeUndefined();
    expect(s.sha256).toBe(createHash('sha256').update(file).digest('hex'));
    const cast = parseCast(file.toString('utf8'));
    expect(cast.bad).toBe(0);
    expect(cast.events.map((e) => e.data).join('')).toBe(parts.join(''));
  });

  it('coalesces output read within COALESCE_MS into one event (time of its first byte); a resize in between keeps the order', async () => {
    const r = setup();
    r.advance(100);
    r.rec.output(enc('a'));
    r.advance(COALESCE_MS);
    r.rec.output(enc('b')); // within the window: appended
    r.advance(COALESCE_MS + 1);
    r.rec.output(enc('c')); // past the window of 'a': a new event
    r.rec.resize(100, 30);
    r.rec.output(enc('d')); // after a resize: a new event, after it
    // a later batch (the encoder thread has had the earlier one) starts a new event
    await new Promise((resolve) => setTimeout(resolve, BATCH_MS * 3));
    r.rec.output(enc('e'));
    const s = await r.rec.finish();
    const cast = parseCast(r.file().toString('utf8'));
    expect(cast.bad).toBe(0);
    const t = (ms: number): number => ms / 1000;
    expect(cast.events).toEqual([
      { t: t(100), code: 'o', data: 'ab' },
      { t: t(100 + 2 * COALESCE_MS + 1), code: 'o', data: 'c' },
      { t: t(100 + 2 * COALESCE_MS + 1), code: 'r', data: '100x30' },
      { t: t(100 + 2 * COALESCE_MS + 1), code: 'o', data: 'd' },
      { t: t(100 + 2 * COALESCE_MS + 1), code: 'o', data: 'e' },
    ]);
    expect(s.bytes).toBe(r.file().length);
  });

  it('records many batches byte for byte (the shared batch slots come back from the encoder thread and are filled again)', async () => {
    const r = setup({ maxBytes: 64 * 1024 * 1024 });
    const parts: string[] = [];
    for (let i = 0; i < 400; i++) {
      // reads of varying size, so a reused buffer's stale bytes would show
      const part = `${i}:${'abcdefghijklmnopqrstuvwxyz'.repeat(1 + (i % 7) * 200)}\r\n`;
      parts.push(part);
      r.rec.output(enc(part));
      r.advance(30); // a new event per read
      if (i % 50 === 49) await new Promise((resolve) => setTimeout(resolve, BATCH_MS * 2));
    }
    const s = await r.rec.finish();
    const file = r.file();
    expect(s.sha256).toBe(createHash('sha256').update(file).digest('hex'));
    const cast = parseCast(file.toString('utf8'));
    expect(cast.bad).toBe(0);
    expect(cast.events.map((e) => e.data)).toEqual(parts);
  });

  it('writes the same bytes whether the encoder thread writes the file (O_DIRECT and fd, fd alone, a refused direct fd) or the session thread does', async () => {
    const files: Buffer[] = [];
    for (const sink of ['fd', 'fd-only', 'bad-direct', 'no-fd'] as const) {
      const r = setup({ maxBytes: 64 * 1024 * 1024, sink });
      for (let i = 0; i < 200; i++) {
        r.rec.output(enc(`${i}:${'0123456789"\\\u001b[1m'.repeat(1 + (i % 5) * 300)}\r\n`));
        r.advance(i % 3 === 0 ? 30 : 1);
        if (i % 40 === 39) await new Promise((resolve) => setTimeout(resolve, BATCH_MS * 2));
      }
      r.rec.resize(100, 30);
      const s = await r.rec.finish();
      const file = r.file();
      expect(s.error).toBeUndefined();
      expect(s.bytes).toBe(file.length);
      expect(s.sha256).toBe(createHash('sha256').update(file).digest('hex'));
      files.push(file);
    }
    expect(files[0]?.length).toBeGreaterThan(1024 * 1024);
    for (const f of files.slice(1)) expect(files[0]?.equals(f)).toBe(true);
  });

  it("opens the file store's recordings with O_DIRECT where the filesystem takes it", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'periscope-rec-'));
    // what this filesystem does with O_DIRECT (tmpfs and some others refuse it at open)
    let takes = true;
    try {
      closeSync(
        openSync(join(dir, 'probe'), fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_DIRECT),
      );
    } catch {
      takes = false;
    }
    const sink = await new FileRecordingStore(dir).create(ID);
    expect(sink.fd).toBeTypeOf('number');
    expect(sink.directFd !== undefined).toBe(takes);
    await sink.close();
  });

  it("reports the encoder thread's failed write to the file as the recording's error", async () => {
    const r = setup({ sink: 'read-only-fd' });
    try {
      // (bytes encoded before the store answered go back to the session thread: wait for it)
      await new Promise((resolve) => setTimeout(resolve, 100));
      r.rec.output(enc('hello'));
      const s = await r.rec.finish();
      expect(s.error).toMatch(/could not write the recording: EBADF/);
      expect((await r.rec.close())['recording_error']).toBe(s.error);
    } finally {
      r.closeFds();
    }
  });

  it('never overwrites an existing recording', async () => {
    const r = setup();
    await r.rec.finish();
    await expect(r.store.create(ID)).rejects.toThrow(/EEXIST/);
  });
});

describe('InputLines', () => {
  const run = (steps: [kind: 'k' | 'o', text: string, at?: number][]): InputDecision[] => {
    const out: InputDecision[] = [];
    const l = new InputLines((d) => out.push(d));
    let now = 0;
    for (const [kind, text, at] of steps) {
      now = at ?? now;
      if (kind === 'k') l.keys(text, now);
      else l.output(text, now);
    }
    l.settle(now + 10_000, true);
    return out;
  };

  it('applies backspace and drops cursor keys; the echo with backspaces counts', () => {
    expect(
      run([
        ['k', 'lx'],
        ['o', 'lx'],
        ['k', '\x7f'],
        ['o', '\b \b'],
        ['k', '\x1b[As'],
        ['o', 's'],
        ['k', '\r'],
      ]),
    ).toEqual([{ kind: 'line', text: 'ls' }]);
  });

  it('Ctrl-C drops the line; a pasted line echoed after Enter is still recorded', () => {
    expect(
      run([
        ['k', 'rm -rf /tmp/x\x03'],
        ['k', 'echo hi\r', 0],
        ['o', 'echo hi\r\nhi\r\n', 100],
      ]),
    ).toEqual([{ kind: 'line', text: 'echo hi' }]);
  });

  it('a line not echoed within the wait is hidden', () => {
    expect(
      run([
        ['k', 'topsecret\r', 0],
        ['o', '\r\n', 10],
        ['o', 'Sorry, try again. topsecret', 900],
      ]),
    ).toEqual([{ kind: 'hidden' }]);
  });

  it('splits words as a shell and redacts with the command log rules', () => {
    expect(shellWords(`kubectl --token 'a b' "c\\"d" e\\ f`)).toEqual([
      'kubectl',
      '--token',
      'a b',
      'c"d',
      'e f',
    ]);
    expect(redactLine(`kubectl --token 'my secret' get pods`)).toBe('kubectl --token *** get pods');
    expect(redactLine('kubectl get pods -A')).toBe('kubectl get pods -A');
    expect(visibleText('\x1b[32mab\x1b[0mc\b')).toBe('ab');
  });
});
