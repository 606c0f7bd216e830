/**
 * The recording store contract, run against both stores: files under a directory
 * (FileRecordingStore) and PostgreSQL large objects on a real PostgreSQL (PostgresRecordingStore,
 * a throwaway cluster on loopback). Recordings are written by the real SessionRecorder (its encoder
 * thread, size cap and SHA-256) and by a raw sink; read back byte for byte; a modified recording is
 * caught by the replay's verified stream; delete and list serve the retention.
 */
import 'reflect-metadata';

import { createHash, randomUUID } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { setImmediate as tick } from 'node:timers/promises';

import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { parseCast, TRUNCATED_MARKER } from '../../apps/server/src/recording/asciicast';
import { PostgresRecordingStore } from '../../apps/server/src/recording/postgres-recording-store';
import { FileRecordingStore, type RecordingStore } from '../../apps/server/src/recording/recording-store';
import { verifiedStream, type StreamOutcome } from '../../apps/server/src/recording/recording.service';
import { RECORDER_HIGH_WATER, SessionRecorder } from '../../apps/server/src/recording/session-recorder';
import { startPostgres, type PostgresServer } from '../support/postgres-server';
import { until } from '../support/wait';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function readAll(r: Readable | undefined): Promise<Buffer> {
  if (!r) throw new Error('no recording');
  const parts: Buffer[] = [];
  for await (const c of r as AsyncIterable<Buffer>) parts.push(c);
  return Buffer.concat(parts);
}

interface StoreUnderTest {
  store: RecordingStore;
  /** Replaces the byte at `pos` of the stored recording (same size): tampering after the session. */
  tamper(id: string, pos: number): Promise<void>;
  /** Stored objects (files or large objects) in existence, to see that a delete leaves none behind. */
  objects(): Promise<number>;
  close(): Promise<void>;
  /** The database's URL (the PostgreSQL store). */
  db?: string;
}

let pg: PostgresServer | undefined;

beforeAll(async () => {
  pg = await startPostgres({ startTimeoutMs: 90_000 });
}, 120_000);

afterAll(async () => {
  await pg?.stop();
});

async function withClient<T>(url: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ connectionString: url, connectionTimeoutMillis: 10_000, statement_timeout: 10_000 });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

const stores: Record<string, () => Promise<StoreUnderTest>> = {
  file: () => {
    const dir = mkdtempSync(join(tmpdir(), 'periscope-rec-contract-'));
    const store = new FileRecordingStore(dir);
    return Promise.resolve({
      store,
      tamper: (id, pos) => {
        const fd = openSync(join(dir, `${id}.cast`), 'r+');
        try {
          const b = Buffer.alloc(1);
          readSync(fd, b, 0, 1, pos);
          writeSync(fd, Buffer.from([b[0] === 0x61 ? 0x62 : 0x61]), 0, 1, pos);
        } finally {
          closeSync(fd);
        }
        return Promise.resolve();
      },
      objects: async () => (await store.list()).length,
      close: () => Promise.resolve(),
    });
  },
  postgres: async () => {
    if (!pg) throw new Error('PostgreSQL did not start (see the beforeAll error)');
    const url = await pg.createDatabase(`recordings_${process.pid}_${randomUUID().slice(0, 8)}`);
    // Small pieces, so that a few hundred KiB already take many lo_put and lo_get statements.
    const store = await PostgresRecordingStore.open(url, { pieceBytes: 64 * 1024 });
    return {
      store,
      tamper: (id, pos) =>
        withClient(url, async (c) => {
          const { rows } = await c.query<{ loid: number }>('SELECT loid FROM recordings WHERE id = $1', [id]);
          const loid = rows[0]?.loid;
          if (loid === undefined) throw new Error(`no recording ${id}`);
          const [old] = (await c.query<{ b: Buffer }>('SELECT lo_get($1, $2, 1) AS b', [loid, pos])).rows;
          const byte = Buffer.from([old?.b[0] === 0x61 ? 0x62 : 0x61]);
          await c.query('SELECT lo_put($1, $2, $3)', [loid, pos, byte]);
        }),
      objects: () =>
        withClient(url, async (c) => {
          const r = await c.query<{ n: string }>('SELECT count(*) AS n FROM pg_largeobject_metadata');
          return Number(r.rows[0]?.n);
        }),
      close: () => store.close(),
      db: url,
    };
  },
};

const header = {
  version: 2 as const,
  width: 80,
  height: 24,
  timestamp: 1000,
  title: 'contract',
  env: { TERM: 'xterm-256color' },
};

function recorder(store: RecordingStore, id: string, maxBytes: number): SessionRecorder {
  return new SessionRecorder(store, { id, mode: 'output', maxBytes, startedAt: Date.now(), header });
}

for (const [kind, make] of Object.entries(stores)) {
  describe(`recording store contract: ${kind}`, () => {
    let s: StoreUnderTest;

    beforeAll(async () => {
      s = await make();
    });

    afterAll(async () => {
      await s.close();
    });

    it('a session is written incrementally, read back byte for byte, with the size and SHA-256 of its close', async () => {
      const id = randomUUID();
      const rec = recorder(s.store, id, 64 * 1024 * 1024);
      const sent: string[] = [];
      for (let i = 0; i < 40; i++) {
        const line = `line ${i} ${'x'.repeat(i * 97)} €\r\n`;
        sent.push(line);
        rec.output(Buffer.from(line));
      }
      // Written while the session runs, not only at its end.
      await until(
        'the first bytes to reach the store',
        async () => ((await s.store.size(id)) ?? 0) > 0,
        10_000,
      );
      for (let i = 0; i < 300; i++) {
        const line = `more ${i} ${'y'.repeat(3000)}\r\n`;
        sent.push(line);
        rec.output(Buffer.from(line));
      }
      const summary = await rec.finish();
      expect(summary.error).toBeUndefined();
      expect(summary.truncated).toBe(false);
      const bytes = await readAll(await s.store.read(id));
      expect(bytes.length).toBe(summary.bytes);
      expect(await s.store.size(id)).toBe(summary.bytes);
      expect(sha(bytes)).toBe(summary.sha256);
      const cast = parseCast(bytes.toString('utf8'));
      expect(cast.bad).toBe(0);
      expect(
        cast.events
          .filter((e) => e.code === 'o')
          .map((e) => e.data)
          .join(''),
      ).toBe(sent.join(''));
      const listed = (await s.store.list()).find((r) => r.id === id);
      expect(listed).toMatchObject({ id, bytes: summary.bytes });
      expect(listed?.open).toBeUndefined();
      expect(Math.abs((listed?.modifiedMs ?? 0) - Date.now())).toBeLessThan(60_000);
    });

    it('a raw sink: chunks larger than a piece, read back identical; a recording is never overwritten', async () => {
      const id = randomUUID();
      const sink = await s.store.create(id);
      const chunks = [Buffer.alloc(10, 1), Buffer.alloc(300 * 1024, 2), Buffer.from('tail')];
      chunks[1]?.fill(3, 100_000, 200_000);
      for (const c of chunks) await sink.write(c);
      await sink.close();
      const all = Buffer.concat(chunks);
      const got = await readAll(await s.store.read(id));
      expect(got.length).toBe(all.length);
      expect(got.equals(all)).toBe(true);
      await expect(s.store.create(id)).rejects.toThrow();
      // and the first one is intact
      expect(sha(await readAll(await s.store.read(id)))).toBe(sha(all));
    });

    it('the size cap: the recording stops at it with the truncated marker', async () => {
      const id = randomUUID();
      const rec = recorder(s.store, id, 4096);
      for (let i = 0; i < 50; i++) rec.output(Buffer.from(`${'z'.repeat(500)}\r\n`));
      const summary = await rec.finish();
      expect(summary.truncated).toBe(true);
      expect(summary.bytes).toBeLessThanOrEqual(4096);
      const bytes = await readAll(await s.store.read(id));
      expect(bytes.length).toBe(summary.bytes);
      expect(sha(bytes)).toBe(summary.sha256);
      expect(parseCast(bytes.toString('utf8')).events.at(-1)).toMatchObject({
        code: 'm',
        data: TRUNCATED_MARKER,
      });
    });

    it('a byte modified after the session is caught by the verified stream of a replay', async () => {
      const id = randomUUID();
      const sink = await s.store.create(id);
      const data = Buffer.alloc(256 * 1024, 0x61);
      await sink.write(data);
      await sink.close();
      const expected = { bytes: data.length, sha256: sha(data) };
      const check = async (): Promise<{ told: StreamOutcome[]; got: number; error?: Error }> => {
        const told: StreamOutcome[] = [];
        const source = await s.store.read(id);
        if (!source) throw new Error('no recording');
        const out = verifiedStream(source, expected, (o) => told.push(o));
        let got = 0;
        try {
          for await (const c of out as AsyncIterable<Buffer>) got += c.length;
          return { told, got };
        } catch (err) {
          return { told, got, error: err as Error };
        }
      };
      const clean = await check();
      expect(clean.error).toBeUndefined();
      expect(clean.told).toEqual([{ ok: true, extra: {} }]);
      expect(clean.got).toBe(data.length);
      await s.tamper(id, 200 * 1024);
      expect(await s.store.size(id)).toBe(data.length); // same size: only the hash tells
      const bad = await check();
      expect(bad.error?.message).toMatch(/integrity check failed: SHA-256/);
      expect(bad.got).toBeLessThan(data.length);
      expect(bad.told).toEqual([{ ok: false, detail: expect.stringMatching(/^SHA-256 /) }]);
    });

    it('delete removes the recording and its stored object; list and size no longer see it', async () => {
      const id = randomUUID();
      const sink = await s.store.create(id);
      await sink.write(Buffer.from('to be deleted'));
      await sink.close();
      const before = await s.objects();
      expect((await s.store.list()).map((r) => r.id)).toContain(id);
      await s.store.delete(id);
      expect(await s.store.size(id)).toBeUndefined();
      expect(await s.store.read(id)).toBeUndefined();
      expect((await s.store.list()).map((r) => r.id)).not.toContain(id);
      expect(await s.objects()).toBe(before - 1);
      await s.store.delete(id); // deleting twice is no error
    });

    if (kind === 'postgres')
      it('a stalled database (the row locked by another transaction): the recorder stops taking output at its high-water mark with one write waiting, and nothing is lost once it moves', async () => {
        const db = s.db ?? '';
        const id = randomUUID();
        const rec = recorder(s.store, id, 256 * 1024 * 1024);
        await until(
          'the recording to be created',
          async () => (await s.store.size(id)) !== undefined,
          10_000,
        );
        const locker = new Client({ connectionString: db, connectionTimeoutMillis: 10_000 });
        await locker.connect();
        const chunk = Buffer.alloc(64 * 1024, 0x71);
        let produced = 0;
        try {
          await locker.query('BEGIN');
          await locker.query('SELECT 1 FROM recordings WHERE id = $1 FOR UPDATE', [id]);
          // A producer as fast as the session allows: it stops while the recorder is not ready.
          const deadline = Date.now() + 30_000;
          while (rec.ready) {
            if (Date.now() > deadline)
              throw new Error(`the recorder still takes output after ${produced} bytes`);
            rec.output(chunk);
            produced += chunk.length;
            await tick();
          }
          await new Promise((r) => setTimeout(r, 1000));
          expect(rec.ready, 'still paused while the database is stalled').toBe(false);
          expect(produced).toBeGreaterThanOrEqual(RECORDER_HIGH_WATER / 2);
          expect(produced).toBeLessThan(2 * RECORDER_HIGH_WATER);
          // Exactly one statement of the store waits on the lock: one write in flight.
          const waiting = await locker.query<{ n: string }>(
            `SELECT count(*) AS n FROM pg_stat_activity
             WHERE application_name = 'periscope-recordings' AND wait_event_type = 'Lock'`,
          );
          expect(Number(waiting.rows[0]?.n)).toBe(1);
        } finally {
          await locker.query('COMMIT').catch(() => undefined);
          await locker.end();
        }
        await until('the recorder to take output again', () => rec.ready, 30_000);
        rec.output(Buffer.from('after'));
        const summary = await rec.finish();
        expect(summary.error).toBeUndefined();
        expect(summary.truncated).toBe(false);
        const bytes = await readAll(await s.store.read(id));
        expect(sha(bytes)).toBe(summary.sha256);
        const out = parseCast(bytes.toString('utf8'))
          .events.filter((e) => e.code === 'o')
          .map((e) => e.data)
          .join('');
        expect(out.length).toBe(produced + 'after'.length);
      }, 90_000);

    if (kind === 'postgres')
      it('a recording still being written is listed as open, and a writer whose recording was deleted fails with a clear error', async () => {
        const id = randomUUID();
        const sink = await s.store.create(id);
        await sink.write(Buffer.from('live'));
        expect((await s.store.list()).find((r) => r.id === id)).toMatchObject({ bytes: 4, open: true });
        await s.store.delete(id);
        await expect(sink.write(Buffer.from('more'))).rejects.toThrow(/no longer where its writer left it/);
        await expect(sink.close()).rejects.toThrow(/deleted before it was closed/);
      });
  });
}
