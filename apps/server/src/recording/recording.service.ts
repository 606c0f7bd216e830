import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { pipeline, Readable, Transform } from 'node:stream';

import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { ERROR_CODE, SESSION_KIND } from '@periscope/protocol';
import { PinoLogger } from 'nestjs-pino';

import { AuditRetentionService } from '../audit/audit-retention.service';
import { AuditLog } from '../audit/audit-log';
import { postgresUrl } from '../audit/audit.module';
import type { StoredAuditEvent } from '../audit/audit-store';
import type { Principal } from '../auth/session-store';
import { isAuditor } from '../auth/tiers';
import { DomainError } from '../common/domain-error';
import type { RecordingMode } from '../config/clusters-file';
import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import type { TerminalSession } from '../terminal/terminal-session';
import { TerminalSessions } from '../terminal/terminal-sessions.service';
import { PostgresRecordingStore } from './postgres-recording-store';
import { FileRecordingStore, type RecordingStore } from './recording-store';
import { SessionRecorder } from './session-recorder';

export const RECORDING_STORE = Symbol('RECORDING_STORE');

const OPEN_VERBS = ['cluster_shell_open', 'exec_open'];
const CLOSE_VERBS = ['cluster_shell_close', 'exec_close'];

/** The recording mode of a session: its cluster's `clusterShell.recording` / `exec.recording`, else the server's. */
export function recordingModeFor(config: ServerConfig, cluster: string, kind: string): RecordingMode {
  const entry = config.clusters.find((c) => c.name === cluster);
  const own = kind === SESSION_KIND.clusterShell ? entry?.clusterShell.recording : entry?.exec.recording;
  return own ?? config.recording.mode;
}

/** A recording checked against its close record, ready to stream. */
export interface VerifiedRecording {
  sessionId: string;
  bytes: number;
  sha256: string;
  truncated: boolean;
  stream: Readable;
}

/**
 * Records every terminal session (as the policy says), answers verified recordings to the people
 * allowed to replay them (auditing each replay), and keeps the recordings within the audit
 * retention and their own size bound.
 */
@Injectable()
export class RecordingService implements OnModuleInit {
  constructor(
    @Inject(SERVER_CONFIG) private readonly config: ServerConfig,
    @Inject(RECORDING_STORE) readonly store: RecordingStore,
    private readonly sessions: TerminalSessions,
    private readonly audit: AuditLog,
    private readonly retention: AuditRetentionService,
    private readonly log: PinoLogger,
  ) {}

  onModuleInit(): void {
    this.sessions.onAdded((s) => {
      this.begin(s);
    });
    this.retention.also(() => this.prune());
  }

  /** Starts the recording of a session about to start (nothing when its mode is off). */
  begin(s: TerminalSession): void {
    const mode = recordingModeFor(this.config, s.info.cluster, s.info.kind);
    if (mode === 'off') return;
    const { info } = s;
    const target = info.pod !== undefined ? ` ${info.namespace ?? ''}/${info.pod}` : '';
    s.addTap(
      new SessionRecorder(this.store, {
        id: info.sessionId,
        mode,
        maxBytes: this.config.recording.maxSessionBytes,
        startedAt: info.startedAt.getTime(),
        header: {
          version: 2,
          width: 80,
          height: 24,
          timestamp: Math.floor(info.startedAt.getTime() / 1000),
          title: `${info.kind} ${info.cluster}${target} by ${info.subject}`,
          env: { TERM: 'xterm-256color' },
        },
        onError: (message) => {
          this.log.error({ sessionId: info.sessionId, err: message }, 'session recording failed');
        },
      }),
    );
  }

  /**
   * The recording of an ended session for someone allowed to replay it (its operator, auditors,
   * admins), verified against the size and SHA-256 of its close record. Every attempt is audited
   * as `session_replay` (refusals and integrity failures with outcome error).
   */
  async open(sessionId: string, p: Principal, purpose: 'replay' | 'download'): Promise<VerifiedRecording> {
    const events = await this.audit.bySession(sessionId);
    const opened = events.find((e) => OPEN_VERBS.includes(e.verb));
    if (!opened) throw new DomainError(ERROR_CODE.notFound, `no session ${sessionId}`);
    const owner = opened.actor;
    const auditor = isAuditor(p, this.config.auth.authorization.auditAdminGroups);
    const record = (outcome: 'ok' | 'error', extra: Record<string, unknown>): void => {
      this.audit
        .write({
          verb: 'session_replay',
          actor: p.subject,
          cluster: opened.cluster,
          sessionId,
          outcome,
          body: { session_id: sessionId, owner, by: p.subject, purpose, ...extra },
        })
        .catch((err: unknown) => {
          this.log.error(
            { sessionId, err: (err as Error).message },
            'could not audit a replay (session_replay)',
          );
        });
    };
    if (owner !== p.subject && !auditor) {
      const reason = `only the session's own operator, auditors and admins may replay it (you are ${p.subject}, tier ${p.tier ?? 'none'})`;
      record('error', { refused: reason });
      throw new DomainError(ERROR_CODE.forbidden, reason, { reason: 'not_owner_or_auditor' });
    }
    const closed = events.find((e) => CLOSE_VERBS.includes(e.verb));
    if (!closed) {
      const live = this.sessions.get(sessionId) !== undefined;
      throw new DomainError(
        live ? ERROR_CODE.unavailable : ERROR_CODE.notFound,
        live
          ? 'the session is still running; its recording is complete when it ends (an admin can watch it live)'
          : 'the session has no close record (its server stopped); its recording, if any, cannot be verified',
      );
    }
    const expected = recordingOf(closed);
    if (!expected)
      throw new DomainError(ERROR_CODE.notFound, 'this session was not recorded (recording was off for it)');
    const integrityFailure = (detail: string): DomainError => {
      record('error', { integrity: 'failed', detail });
      this.log.error({ sessionId, detail }, 'recording integrity check failed');
      return new DomainError(
        ERROR_CODE.recordingIntegrity,
        `the recording does not match its close record (${detail}): it was modified or damaged after the session ended; keep it (the file, or the large object named in table recordings) for investigation`,
        { integrity: 'failed' },
      );
    };
    const gone = (): DomainError =>
      new DomainError(ERROR_CODE.notFound, 'the recording is gone (deleted by the retention)');
    const size = await this.store.size(sessionId);
    if (size === undefined) throw gone();
    if (size !== expected.bytes) throw integrityFailure(`size ${size}, recorded ${expected.bytes}`);
    const source = await this.store.read(sessionId);
    if (!source) throw gone();
    if (expected.bytes <= REPLAY_BUFFER_BYTES) {
      // Small (most sessions): read once into memory and checked before a byte is sent (409 if not).
      const chunks: Buffer[] = [];
      const hash = createHash('sha256');
      let bytes = 0;
      for await (const chunk of source as AsyncIterable<Buffer>) {
        bytes += chunk.length;
        if (bytes > REPLAY_BUFFER_BYTES) break; // it grew since its size was read: a mismatch
        hash.update(chunk);
        chunks.push(chunk);
      }
      source.destroy();
      const check = mismatch(bytes, hash.digest('hex'), expected);
      if (check !== undefined) throw integrityFailure(check);
      record('ok', { recording_bytes: expected.bytes });
      return { sessionId, ...expected, stream: Readable.from([Buffer.concat(chunks)]) };
    }
    // Large: read once, hashed while it streams; the last chunk is held back until the hash is
    // known, and on a mismatch the response is cut short instead (see verifiedStream).
    const stream = verifiedStream(source, expected, (outcome) => {
      if (outcome.ok) record('ok', { recording_bytes: expected.bytes, ...outcome.extra });
      else {
        record('error', { integrity: 'failed', detail: outcome.detail, streamed: true });
        this.log.error(
          { sessionId, detail: outcome.detail },
          'recording integrity check failed while streaming it; the response was cut short',
        );
      }
    });
    return { sessionId, ...expected, stream };
  }

  /**
   * Retention, run with the audit's: recordings older than the audit retention go, then the
   * oldest until all fit PERISCOPE_RECORDING_MAX_TOTAL_MB. A live session's recording is kept; one
   * a shared store lists as `open` (still written by another replica, or left by one that died) is
   * left out of the size bound, not of the age bound.
   */
  async prune(now = Date.now()): Promise<{ deletedByAge: number; deletedBySize: number; bytes: number }> {
    // A store shared by replicas prunes on one replica at a time (the others skip the round).
    if (this.store.exclusive)
      return (
        (await this.store.exclusive(() => this.pruneNow(now))) ?? {
          deletedByAge: 0,
          deletedBySize: 0,
          bytes: 0,
        }
      );
    return this.pruneNow(now);
  }

  private async pruneNow(
    now: number,
  ): Promise<{ deletedByAge: number; deletedBySize: number; bytes: number }> {
    const live = new Set(this.sessions.ids());
    const all = (await this.store.list())
      .filter((r) => !live.has(r.id))
      .sort((a, b) => a.modifiedMs - b.modifiedMs);
    const cutoff = now - this.config.audit.retentionDays * 86_400_000;
    let deletedByAge = 0;
    let deletedBySize = 0;
    const kept = [];
    for (const r of all) {
      if (r.modifiedMs < cutoff) {
        await this.store.delete(r.id);
        deletedByAge++;
      } else if (r.open !== true) kept.push(r); // (one still written elsewhere: not in the size bound)
    }
    let total = kept.reduce((n, r) => n + r.bytes, 0);
    for (const r of kept) {
      if (total <= this.config.recording.maxTotalBytes) break;
      await this.store.delete(r.id);
      total -= r.bytes;
      deletedBySize++;
    }
    if (deletedByAge + deletedBySize > 0)
      this.log.info(
        { deletedByAge, deletedBySize, bytes: total },
        'recording retention deleted old recordings',
      );
    return { deletedByAge, deletedBySize, bytes: total };
  }
}

/** Recordings up to this size are read into memory and checked before sending (one read). */
export const REPLAY_BUFFER_BYTES = 4 * 1024 * 1024;

/** What differs between the bytes read and the close record, or undefined. */
function mismatch(
  bytes: number,
  sha256: string,
  expected: { bytes: number; sha256: string },
): string | undefined {
  if (bytes !== expected.bytes) return `size ${bytes}, recorded ${expected.bytes}`;
  if (sha256 !== expected.sha256)
    return `SHA-256 ${sha256.slice(0, 12)}…, recorded ${expected.sha256.slice(0, 12)}…`;
  return undefined;
}

export type StreamOutcome = { ok: true; extra: Record<string, unknown> } | { ok: false; detail: string };

/**
 * The recording's bytes as they are read, hashed on the way; the last chunk is held back until
 * the end and sent only when size and SHA-256 match the close record. On a mismatch the stream
 * fails instead (the HTTP response is cut short of its Content-Length, so no client takes it
 * for complete). `done` is told once: the check's outcome, or that the reader went away first.
 */
export function verifiedStream(
  source: Readable,
  expected: { bytes: number; sha256: string },
  done: (o: StreamOutcome) => void,
): Readable {
  const hash = createHash('sha256');
  let bytes = 0;
  let held: Buffer | undefined;
  let told = false;
  const tell = (o: StreamOutcome): void => {
    if (told) return;
    told = true;
    done(o);
  };
  const check = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      bytes += chunk.length;
      const out = held;
      held = chunk;
      cb(null, out);
    },
    flush(cb) {
      const detail = mismatch(bytes, hash.digest('hex'), expected);
      if (detail !== undefined) {
        tell({ ok: false, detail });
        cb(new Error(`recording integrity check failed: ${detail}`));
        return;
      }
      tell({ ok: true, extra: {} });
      cb(null, held);
    },
  });
  check.on('close', () => {
    tell({ ok: true, extra: { incomplete: `the reader went away after ${bytes} bytes` } });
  });
  pipeline(source, check, () => undefined);
  return check;
}

/** The recording a close record names, if any. */
export function recordingOf(
  closed: StoredAuditEvent,
): { bytes: number; sha256: string; truncated: boolean } | undefined {
  const b = closed.body;
  if (typeof b.recording_id !== 'string' || typeof b.recording_sha256 !== 'string') return undefined;
  if (typeof b.recording_bytes !== 'number') return undefined;
  return { bytes: b.recording_bytes, sha256: b.recording_sha256, truncated: b.recording_truncated === true };
}

export function fileRecordingStore(config: ServerConfig): RecordingStore {
  return new FileRecordingStore(join(config.dataDir, 'recordings'));
}

/**
 * The recording store: PostgreSQL large objects when PERISCOPE_DATABASE_URL is set (several
 * replicas share it), else files under the data directory.
 */
export async function recordingStore(
  config: ServerConfig,
  onError: (err: Error) => void,
): Promise<RecordingStore> {
  const pg = config.audit.postgres;
  if (pg === undefined) return fileRecordingStore(config);
  return PostgresRecordingStore.open(postgresUrl(pg), { onError });
}
