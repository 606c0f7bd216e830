import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';

import type { Pool } from 'pg';

import { openMigratedPool } from '../audit/postgres-pool';
import {
  checkRecordingId,
  type RecordingSink,
  type RecordingStore,
  type StoredRecording,
} from './recording-store';

export interface PostgresRecordingStoreOptions {
  /** Errors of idle pooled connections (the database restarted, a network cut); never thrown. */
  onError?: (err: Error) => void;
  /** Connections in the pool (default 8; each recorded session has at most one statement in flight). */
  maxConnections?: number;
  /** Deadline of one connection attempt (default 10 s). */
  connectTimeoutMs?: number;
  /** Deadline of one statement, server side (default 60 s). */
  statementTimeoutMs?: number;
  /** Bytes per lo_put / lo_get statement (default 1 MiB). */
  pieceBytes?: number;
}

/** Bytes of one lo_put or lo_get: bounds each statement's parameter or result and each read's buffer. */
export const RECORDING_PIECE_BYTES = 1024 * 1024;

/** Held by the replica that prunes recordings; the others skip that round (a session-scoped advisory lock). */
const PRUNE_LOCK = `hashtext('periscope:recordings:prune')`;

interface ListRow {
  id: string;
  bytes: string;
  modified_at: Date;
  closed: boolean;
}

/**
 * Recordings in PostgreSQL large objects (PERISCOPE_DATABASE_URL), readable from every server
 * replica: table `recordings` (migration 3) maps a recording id (the session id) to its large
 * object and keeps its size, SHA-256 (at close), and times.
 *
 * Same contract as {@link FileRecordingStore}: a recording is created once (never overwritten),
 * written incrementally as the session runs (each write is `lo_put` at the current end in one
 * statement that also advances the row's size, pieces of {@link RECORDING_PIECE_BYTES}; each
 * statement commits, so what was written survives the replica), and closed: the SHA-256 of the
 * bytes this sink wrote is stored and checked with the row's size. The recorder keeps one write in
 * flight and pauses the session above its high-water mark (session-recorder.ts), so a slow
 * database slows the session's output exactly as a slow disk does; nothing is buffered here.
 * Reads stream the object with `lo_get` in pieces (one statement in flight per reader, as fast as
 * the reader takes them); the reader (RecordingService) checks size and SHA-256 against the close
 * record, so a modified large object is detected like a modified file.
 */
export class PostgresRecordingStore implements RecordingStore {
  readonly kind = 'postgres';
  private readonly piece: number;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly pool: Pool,
    /** Migration versions this store applied when it opened (empty: the schema was current). */
    readonly appliedMigrations: readonly number[],
    options: PostgresRecordingStoreOptions,
  ) {
    this.piece = options.pieceBytes ?? RECORDING_PIECE_BYTES;
  }

  /** Connects and migrates the schema (the audit's migrations, once across replicas). */
  static async open(
    url: string,
    options: PostgresRecordingStoreOptions = {},
  ): Promise<PostgresRecordingStore> {
    const { pool, applied } = await openMigratedPool(url, {
      ...options,
      maxConnections: options.maxConnections ?? 8,
      applicationName: 'periscope-recordings',
      what: 'recordings',
    });
    return new PostgresRecordingStore(pool, applied, options);
  }

  async create(id: string): Promise<RecordingSink> {
    checkRecordingId(id);
    // One statement: the object and its row exist together or not at all; a second create of
    // the same id fails on the primary key (a recording is never overwritten).
    await this.pool.query('INSERT INTO recordings (id, loid) VALUES ($1, lo_create(0))', [id]);
    const hash = createHash('sha256');
    let offset = 0;
    let closed = false;
    const put = async (piece: Buffer): Promise<void> => {
      // Writes at the row's size and advances it, in one statement; a row whose size is not
      // where this sink left it (deleted, or written by someone else) is an error, never a gap.
      const r = await this.pool.query(
        `WITH r AS (
           UPDATE recordings SET bytes = bytes + $3, modified_at = now()
           WHERE id = $1 AND bytes = $2 AND closed_at IS NULL RETURNING loid
         )
         SELECT lo_put(r.loid, $2, $4) FROM r`,
        [id, offset, piece.length, piece],
      );
      if (r.rowCount !== 1)
        throw new Error(
          `the recording ${id} is no longer where its writer left it (deleted by the retention, or closed); the rest of the session is not recorded`,
        );
      offset += piece.length;
      hash.update(piece);
    };
    return {
      write: async (chunk) => {
        if (closed) throw new Error(`the recording ${id} is closed`);
        for (let at = 0; at < chunk.length; at += this.piece)
          await put(chunk.subarray(at, Math.min(chunk.length, at + this.piece)));
      },
      close: async () => {
        if (closed) return;
        closed = true;
        const r = await this.pool.query<{ bytes: string }>(
          `UPDATE recordings SET sha256 = $2, closed_at = now(), modified_at = now()
           WHERE id = $1 AND closed_at IS NULL RETURNING bytes`,
          [id, hash.digest('hex')],
        );
        const bytes = r.rows[0]?.bytes;
        if (bytes === undefined)
          throw new Error(`the recording ${id} was deleted before it was closed (retention?)`);
        if (Number(bytes) !== offset)
          throw new Error(`the recording ${id} has ${bytes} bytes in the database, ${offset} were written`);
      },
    };
  }

  async read(id: string): Promise<Readable | undefined> {
    checkRecordingId(id);
    const r = await this.pool.query<{ loid: number; bytes: string }>(
      'SELECT loid, bytes FROM recordings WHERE id = $1',
      [id],
    );
    const row = r.rows[0];
    if (!row) return undefined;
    const loid = row.loid;
    const pool = this.pool;
    const piece = this.piece;
    let offset = 0;
    // Reads up to the object's end (lo_get answers fewer bytes than asked there), so a recording
    // whose object is longer or shorter than its row says is read as it is and fails the check.
    return new Readable({
      highWaterMark: piece,
      read() {
        // (text results, bytea as hex: node-pg reads binary results as UTF-8 strings, which mangles bytes)
        pool.query<{ data: Buffer }>('SELECT lo_get($1, $2, $3) AS data', [loid, offset, piece]).then(
          (res) => {
            const data = res.rows[0]?.data ?? Buffer.alloc(0);
            if (!Buffer.isBuffer(data)) {
              this.destroy(
                new Error(`the database answered the recording ${id} as ${typeof data}, not bytes`),
              );
              return;
            }
            offset += data.length;
            if (data.length > 0) this.push(data);
            if (data.length < piece) this.push(null);
          },
          (err: unknown) => {
            this.destroy(
              new Error(`could not read the recording ${id} from the database: ${(err as Error).message}`),
            );
          },
        );
      },
    });
  }

  async size(id: string): Promise<number | undefined> {
    checkRecordingId(id);
    const r = await this.pool.query<{ bytes: string }>('SELECT bytes FROM recordings WHERE id = $1', [id]);
    const bytes = r.rows[0]?.bytes;
    return bytes === undefined ? undefined : Number(bytes);
  }

  /** Every recording, `open` while its writer has not closed it (live on some replica, or its replica died). */
  async list(): Promise<StoredRecording[]> {
    const r = await this.pool.query<ListRow>(
      'SELECT id, bytes, modified_at, closed_at IS NOT NULL AS closed FROM recordings ORDER BY modified_at',
    );
    return r.rows.map((x) => ({
      id: x.id,
      bytes: Number(x.bytes),
      modifiedMs: x.modified_at.getTime(),
      ...(x.closed ? {} : { open: true }),
    }));
  }

  async delete(id: string): Promise<void> {
    checkRecordingId(id);
    // The row and its object go together (one statement).
    await this.pool.query(
      'WITH d AS (DELETE FROM recordings WHERE id = $1 RETURNING loid) SELECT lo_unlink(d.loid) FROM d',
      [id],
    );
  }

  /**
   * Runs `fn` while holding the recordings' prune lock; answers undefined without running it when
   * another replica holds it (that one prunes this round).
   */
  async exclusive<T>(fn: () => Promise<T>): Promise<T | undefined> {
    const client = await this.pool.connect();
    try {
      const got = await client.query<{ locked: boolean }>(
        `SELECT pg_try_advisory_lock(${PRUNE_LOCK}) AS locked`,
      );
      if (got.rows[0]?.locked !== true) return undefined;
      try {
        return await fn();
      } finally {
        await client.query(`SELECT pg_advisory_unlock(${PRUNE_LOCK})`);
      }
    } finally {
      client.release();
    }
  }

  close(): Promise<void> {
    this.closing ??= this.pool.end();
    return this.closing;
  }
}
