import type { StreamResumeState } from '@periscope/protocol';
import type { Redis } from 'ioredis';

import type { CapSlots } from '../shared-state/cap-slots';
import type { TerminalSession } from './terminal-session';

import { luaScript, PendingOps, type ScriptCall } from '../shared-state/redis-script';

/**
 * What a replica needs to take over a live session whose replica died (re-homing, see
 * docs/architecture.md "Re-homing a session"): kept in Redis by the session's owner from the
 * moment its exec stream is up on an agent's tunnel until it ends. No token or secret: the
 * browser's resume credential is its sign-in, kept only as `loginId` (a truncated SHA-256 of the
 * cookie, as AuthService.loginId has it); names of the pod and Secret follow from the session id.
 */
export interface RehomeRecord {
  v: 1;
  sessionId: string;
  /** `cluster_shell` (pod exec sessions are not re-homed yet) */
  kind: string;
  cluster: string;
  /** the exec stream's id on the agent's tunnel (the agent keeps it across the replica's death) */
  streamId: number;
  subject: string;
  tier: string | null;
  mode?: string;
  /** the sign-in the session is shown in (AuthService.loginId), never the cookie */
  loginId?: string;
  /** epoch ms */
  startedAt: number;
  /** epoch ms: the maximum length ends the session then, whichever replica holds it */
  maxEndsAt: number;
  /** the cap-slot pool the session holds a slot in (its slot is the session id in that pool) */
  capPool: string;
  /** the session's Pod and Secret (teardown), for the record: both are named by the session id */
  pod?: string;
  /** whether the session was being recorded (a moved session is not recorded further) */
  recording?: boolean;
  /** what the kind needs besides (SessionInfo.rehome; pod exec: its open record's fields) */
  detail?: Record<string, unknown>;
  /** the replica holding the session now */
  owner: string;
  /** +1 at each take-over: the fencing counter of the session's ownership */
  epoch: number;
}

/**
 * One kind of session that can move to another replica: its cap slots (the adopter renews and
 * frees the session's slot there), and how to build the session from its record, with the close
 * record's teardown and release wired (the caller adopts the exec).
 */
export interface RehomeKind {
  /** the cap-slot pool of the kind (`cluster_shell`, `pod_exec`) */
  pool: string;
  caps(): CapSlots;
  build(r: RehomeRecord, release: () => void): TerminalSession;
}

/** The outcome of a take-over attempt. */
export type AdoptOutcome =
  { ok: true; from: string; epoch: number; record: RehomeRecord } | { ok: false; reason: string };

/**
 * KEYS: record, session ownership. ARGV: me, lease ms, stream id, expected epoch. Takes the
 * session over when its record names that stream, is still at the epoch the caller read
 * (compare-and-set: of two replicas racing, one wins) and its ownership is free or still its
 * recorded owner's (a dead replica's lease not yet ended, or a live replica that lost the agent:
 * the tunnel here is the proof); the epoch goes up by one. Answers {1, from, epoch, record} or
 * {0, reason}.
 */
const ADOPT = `local v = redis.call('GET', KEYS[1])
if not v then return {0, 'no re-homing record (the session ended, or was closed as replica_lost)'} end
local r = cjson.decode(v)
if tonumber(r.streamId) ~= tonumber(ARGV[3]) then return {0, 'the record names another stream'} end
if r.owner == ARGV[1] then return {0, 'this replica already holds the session'} end
if tonumber(r.epoch) ~= tonumber(ARGV[4]) then return {0, 'another replica took the session over: ' .. r.owner} end
local cur = redis.call('GET', KEYS[2])
if cur and cur ~= r.owner then return {0, 'another replica took the session over: ' .. cur} end
local from = r.owner
r.owner = ARGV[1]
r.epoch = tonumber(r.epoch) + 1
local json = cjson.encode(r)
redis.call('SET', KEYS[1], json, 'KEEPTTL')
redis.call('SET', KEYS[2], ARGV[1], 'PX', tonumber(ARGV[2]))
return {1, from, tostring(r.epoch), json}`;

/**
 * KEYS: session ownership, record. Before the sweep writes `replica_lost`: no owner any more, so
 * the session can no longer be taken over (the record goes). 1 fenced; 0 someone owns it (a
 * take-over won the race: no replica_lost).
 */
const FENCE = `if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
return 1`;

/** KEYS: record. ARGV: me. Deletes the record when this replica holds the session. */
const DROP = `local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if cjson.decode(v).owner ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1`;

/** Re-homing records in Redis: `<prefix>rehome:<sessionId>`, beside `<prefix>own:session:<id>`. */
export class RehomeStore {
  private readonly adoptScript: ScriptCall;
  private readonly fenceScript: ScriptCall;
  private readonly dropScript: ScriptCall;
  private readonly pending = new PendingOps();

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly replica: string,
    /** the session ownership lease (RECORD_LEASE) */
    private readonly leaseMs: number,
  ) {
    this.adoptScript = luaScript(redis, 'periscopeRehomeAdopt', 2, ADOPT);
    this.fenceScript = luaScript(redis, 'periscopeRehomeFence', 2, FENCE);
    this.dropScript = luaScript(redis, 'periscopeRehomeDrop', 1, DROP);
  }

  private key(id: string): string {
    return `${this.prefix}rehome:${id}`;
  }

  /** The same key as RedisOwnership('session') writes. */
  private ownKey(id: string): string {
    return `${this.prefix}own:session:${id}`;
  }

  /**
   * Written by the owner once the exec stream is up; expires after the session's maximum length
   * plus `graceMs` at the latest (deleted at its end).
   */
  async write(r: Omit<RehomeRecord, 'owner' | 'epoch' | 'v'>, graceMs: number): Promise<void> {
    const record: RehomeRecord = { v: 1, ...r, owner: this.replica, epoch: 1 };
    const ttl = Math.max(1_000, r.maxEndsAt - Date.now() + graceMs);
    await this.pending.track(this.redis.set(this.key(r.sessionId), JSON.stringify(record), 'PX', ttl));
  }

  async read(id: string): Promise<RehomeRecord | undefined> {
    const v = await this.redis.get(this.key(id));
    return v === null ? undefined : parseRecord(v);
  }

  /** Compare-and-set of the session's ownership to this replica from `epoch` (see ADOPT). */
  async adopt(id: string, streamId: number, epoch: number): Promise<AdoptOutcome> {
    const a = (await this.pending.track(
      this.adoptScript(this.key(id), this.ownKey(id), this.replica, this.leaseMs, streamId, epoch),
    )) as unknown[];
    if (Number(a[0]) !== 1) return { ok: false, reason: String(a[1]) };
    const record = parseRecord(String(a[3]));
    if (!record) return { ok: false, reason: 'the re-homing record is malformed' };
    return { ok: true, from: String(a[1]), epoch: Number(a[2]), record };
  }

  /** Before a `replica_lost` close: true when the session can no longer be taken over. */
  async fence(id: string): Promise<boolean> {
    return Number(await this.pending.track(this.fenceScript(this.ownKey(id), this.key(id)))) === 1;
  }

  /** At the session's end, by its owner. */
  async drop(id: string): Promise<void> {
    await this.pending.track(this.dropScript(this.key(id), this.replica));
  }

  drain(deadlineMs: number): Promise<void> {
    return this.pending.drain(deadlineMs);
  }
}

/** A record read back from Redis, or undefined when it is not one of ours. */
export function parseRecord(v: string): RehomeRecord | undefined {
  let r: unknown;
  try {
    r = JSON.parse(v);
  } catch {
    return undefined;
  }
  if (typeof r !== 'object' || r === null) return undefined;
  const o = r as Partial<RehomeRecord>;
  const ok =
    o.v === 1 &&
    typeof o.sessionId === 'string' &&
    typeof o.kind === 'string' &&
    typeof o.cluster === 'string' &&
    Number.isSafeInteger(o.streamId) &&
    typeof o.subject === 'string' &&
    Number.isSafeInteger(o.startedAt) &&
    Number.isSafeInteger(o.maxEndsAt) &&
    typeof o.capPool === 'string' &&
    typeof o.owner === 'string' &&
    Number.isSafeInteger(o.epoch);
  if (!ok) return undefined;
  // cjson writes an empty Lua table for a null tier; keep null.
  return { ...(o as RehomeRecord), tier: typeof o.tier === 'string' ? o.tier : null };
}

/**
 * Whether (and from which output offset) an orphaned stream can be taken over losslessly: the
 * agent must have kept stdout from an offset (`outFrom`, absent when it cannot: it sent stderr, or
 * re-homing is off) and the kept span must fit the resume buffer (the browser's offset is at most
 * one buffer behind what the agent sent).
 */
export function takeOverPlan(
  orphan: StreamResumeState,
  record: Pick<RehomeRecord, 'streamId' | 'sessionId' | 'cluster'>,
  cluster: string,
  bufferBytes: number,
): { ok: true; outFrom: number; outTo: number } | { ok: false; reason: string } {
  if (record.sessionId !== orphan.sessionId || record.streamId !== orphan.streamId)
    return { ok: false, reason: 'the stream is not the session’s' };
  if (record.cluster !== cluster) return { ok: false, reason: 'the session is on another cluster' };
  if (orphan.outFrom === undefined || orphan.outTo === undefined)
    return {
      ok: false,
      reason: 'the agent kept no output of the stream (re-homing off on the agent, or not one byte stream)',
    };
  if (orphan.outFrom > orphan.outTo) return { ok: false, reason: 'the agent reported an inverted window' };
  // Never more than the resume buffer: older bytes would fall off the front anyway.
  const outFrom = Math.max(orphan.outFrom, orphan.outTo - bufferBytes);
  return { ok: true, outFrom, outTo: orphan.outTo };
}
