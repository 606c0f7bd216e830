import { constants as fsConstants, createReadStream } from 'node:fs';
import { mkdir, open, readdir, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';

/**
 * Where recordings live. The embedded default is one file per session under the data directory
 * (FileRecordingStore). With several server replicas (PERISCOPE_DATABASE_URL set) a session's
 * recording must be readable from any replica: PostgresRecordingStore keeps it in a PostgreSQL
 * large object. Postgres rather than object storage: the replicas already need it (the audit), so
 * there is no new service or credential to run; the recording's index sits next to the audit rows
 * that name it (one backup, one retention schedule); `lo_put` at an offset writes incrementally as
 * the session runs and `lo_get` in pieces streams a replay. S3 would add a dependency and a
 * credential. The price: every recorded byte goes through the database's WAL and backups (size the
 * database for PERISCOPE_RECORDING_MAX_TOTAL_MB).
 */
export interface RecordingSink {
  /** appends; resolves when the bytes are written (not yet durable); `chunk` is reused after that: keep no reference */
  write(chunk: Buffer): Promise<void>;
  /** makes everything durable (fsync) and closes */
  close(): Promise<void>;
  /**
   * A file's descriptor, when the recording thread may append to it itself (synchronous writes,
   * in order, none through write(); close() only after the thread is done with it).
   */
  readonly fd?: number;
  /**
   * The same file opened with O_DIRECT where the filesystem allows it: the recording thread writes
   * the block-aligned part of its output through it (no copy into the page cache, nothing left to
   * write back, no cache filled with recordings nobody reads yet) and the rest through `fd`.
   */
  readonly directFd?: number;
}

export interface StoredRecording {
  id: string;
  bytes: number;
  modifiedMs: number;
  /**
   * Its writer has not closed it: a session live on another replica, or one whose replica died
   * (stores shared by replicas only). The size bound leaves it alone; the age bound does not.
   */
  open?: boolean;
}

export interface RecordingStore {
  /** what the close record names as `recording_store` */
  readonly kind: string;
  create(id: string): Promise<RecordingSink>;
  /** the recording's bytes, or undefined when there is none */
  read(id: string): Promise<Readable | undefined>;
  size(id: string): Promise<number | undefined>;
  list(): Promise<StoredRecording[]>;
  delete(id: string): Promise<void>;
  /**
   * Stores shared by replicas: runs `fn` (the retention) while no other replica runs it; answers
   * undefined without running it when another one is.
   */
  exclusive?<T>(fn: () => Promise<T>): Promise<T | undefined>;
  /** Releases the store's connections at shutdown. */
  close?(): Promise<void>;
}

/** Recording ids are session ids (UUIDs): nothing else ever names a file. */
const ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SUFFIX = '.cast';

export function checkRecordingId(id: string): string {
  if (!ID.test(id)) throw new Error(`not a recording id: ${id.slice(0, 80)}`);
  return id;
}

/** The file opened again for writing with O_DIRECT, or undefined where that is refused. */
async function openDirect(path: string): Promise<FileHandle | undefined> {
  // (O_DIRECT is Linux's; elsewhere the constant is missing)
  const { O_DIRECT, O_WRONLY } = fsConstants as { O_DIRECT?: number; O_WRONLY: number };
  if (O_DIRECT === undefined) return undefined;
  try {
    return await open(path, O_WRONLY | O_DIRECT);
  } catch {
    return undefined;
  }
}

export class FileRecordingStore implements RecordingStore {
  readonly kind = 'file';
  private ready: Promise<unknown> | undefined;

  constructor(readonly dir: string) {}

  private path(id: string): string {
    return join(this.dir, `${checkRecordingId(id)}${SUFFIX}`);
  }

  async create(id: string): Promise<RecordingSink> {
    this.ready ??= mkdir(this.dir, { recursive: true, mode: 0o700 });
    await this.ready;
    // 'wx': a recording is never overwritten.
    const fh: FileHandle = await open(this.path(id), 'wx', 0o600);
    const direct = await openDirect(this.path(id));
    return {
      fd: fh.fd,
      ...(direct ? { directFd: direct.fd } : {}),
      write: async (chunk) => {
        let off = 0;
        while (off < chunk.length) off += (await fh.write(chunk, off)).bytesWritten;
      },
      close: async () => {
        try {
          await direct?.close();
          await fh.sync();
        } finally {
          await fh.close();
        }
      },
    };
  }

  async read(id: string): Promise<Readable | undefined> {
    const p = this.path(id);
    try {
      await stat(p);
    } catch {
      return undefined;
    }
    return createReadStream(p);
  }

  async size(id: string): Promise<number | undefined> {
    try {
      return (await stat(this.path(id))).size;
    } catch {
      return undefined;
    }
  }

  async list(): Promise<StoredRecording[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return [];
    }
    const out: StoredRecording[] = [];
    for (const n of names) {
      const id = n.slice(0, -SUFFIX.length);
      if (!n.endsWith(SUFFIX) || !ID.test(id)) continue;
      try {
        const s = await stat(join(this.dir, n));
        out.push({ id, bytes: s.size, modifiedMs: s.mtimeMs });
      } catch {
        // deleted meanwhile
      }
    }
    return out;
  }

  async delete(id: string): Promise<void> {
    await rm(this.path(id), { force: true });
  }
}
