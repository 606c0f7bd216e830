import type { Redis } from 'ioredis';

import type { Ownership, SharedLock } from './ports';
import { luaScript, PendingOps, type ScriptCall, type StateLog } from './redis-script';

/** Renews the lease when `owner` still holds it: 1, or 0 (expired, or another replica's now). */
const RENEW_IF_OWNER = `if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`;

/** Deletes the lease when `owner` still holds it: 1, or 0 (never another replica's). */
const RELEASE_IF_OWNER = `if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`;

/** Leases on single keys: the value is the owner (a replica id), the TTL the lease. */
export class RedisLeases {
  private readonly renewIfOwner: ScriptCall;
  private readonly releaseIfOwner: ScriptCall;

  constructor(private readonly redis: Redis) {
    this.renewIfOwner = luaScript(redis, 'periscopeLeaseRenew', 1, RENEW_IF_OWNER);
    this.releaseIfOwner = luaScript(redis, 'periscopeLeaseRelease', 1, RELEASE_IF_OWNER);
  }

  /** SET NX PX (or, `takeOver`, SET PX): whether `owner` holds it now. */
  async acquire(key: string, owner: string, leaseMs: number, takeOver = false): Promise<boolean> {
    const r = takeOver
      ? await this.redis.set(key, owner, 'PX', leaseMs)
      : await this.redis.set(key, owner, 'PX', leaseMs, 'NX');
    return r === 'OK';
  }

  async renew(key: string, owner: string, leaseMs: number): Promise<boolean> {
    return Number(await this.renewIfOwner(key, owner, leaseMs)) === 1;
  }

  async release(key: string, owner: string): Promise<boolean> {
    return Number(await this.releaseIfOwner(key, owner)) === 1;
  }

  async owner(key: string): Promise<string | undefined> {
    return (await this.redis.get(key)) ?? undefined;
  }
}

export interface LeaseTiming {
  /** how long a record outlives its last renewal */
  leaseMs: number;
  /** how often held records are renewed (a third of the lease unless told) */
  renewEveryMs?: number;
}

/** Ownership records in Redis: `<prefix>own:<kind>:<id>` = replica id, with a lease. */
export class RedisOwnership implements Ownership {
  private readonly mine = new Set<string>();
  private readonly pending = new PendingOps();
  private readonly timer: NodeJS.Timeout;
  private stopped = false;
  private readonly lostListeners: ((id: string) => void)[] = [];

  constructor(
    readonly kind: string,
    private readonly leases: RedisLeases,
    private readonly prefix: string,
    private readonly replica: string,
    private readonly timing: LeaseTiming,
    private readonly log: StateLog,
  ) {
    this.timer = setInterval(
      () => {
        void this.renewAll();
      },
      timing.renewEveryMs ?? Math.floor(timing.leaseMs / 3),
    );
    this.timer.unref();
  }

  private key(id: string): string {
    return `${this.prefix}own:${this.kind}:${id}`;
  }

  async claim(id: string, opts: { takeOver?: boolean } = {}): Promise<boolean> {
    if (this.stopped) return false;
    const ok = await this.pending.track(
      this.leases.acquire(this.key(id), this.replica, this.timing.leaseMs, opts.takeOver === true),
    );
    // Bounded by what this replica holds: its live sessions, its connected agents.
    if (ok) this.mine.add(id);
    return ok;
  }

  async release(id: string): Promise<void> {
    this.mine.delete(id);
    if (this.stopped) return;
    await this.pending.track(this.leases.release(this.key(id), this.replica));
  }

  ownerOf(id: string): Promise<string | undefined> {
    return this.leases.owner(this.key(id));
  }

  held(): string[] {
    return [...this.mine];
  }

  onLost(cb: (id: string) => void): void {
    this.lostListeners.push(cb);
  }

  /** One heartbeat: every held record's lease again; a record another replica took is dropped. */
  async renewAll(): Promise<void> {
    let failed = 0;
    let lastError = '';
    await Promise.all(
      [...this.mine].map(async (id) => {
        try {
          if (
            !(await this.pending.track(this.leases.renew(this.key(id), this.replica, this.timing.leaseMs)))
          ) {
            this.mine.delete(id);
            this.log.info(
              { kind: this.kind, id },
              'ownership record lost (expired or taken over by another replica)',
            );
            for (const l of this.lostListeners) l(id);
          }
        } catch (err) {
          failed++;
          lastError = (err as Error).message;
        }
      }),
    );
    // One line per heartbeat, however many records failed.
    if (failed > 0)
      this.log.warn(
        { kind: this.kind, failed, err: lastError },
        'could not renew ownership records in Redis; retrying at the next heartbeat (they expire if Redis stays away)',
      );
  }

  /**
   * Stops renewing; `release`: drops this replica's records first (a clean shutdown), otherwise
   * they expire with their lease (what a replica that dies leaves).
   */
  async stop({ release, deadlineMs = 2_000 }: { release: boolean; deadlineMs?: number }): Promise<void> {
    clearInterval(this.timer);
    if (release)
      for (const id of this.mine)
        void this.pending.track(this.leases.release(this.key(id), this.replica)).catch(() => undefined);
    this.stopped = true;
    this.mine.clear();
    await this.pending.drain(deadlineMs);
  }
}

/**
 * A lock in Redis (`<prefix>lock:<name>` = replica id): each heartbeat takes it when free, or
 * renews it when held. It counts as held only until its lease would end since the last
 * successful renewal (by this process's clock), so a replica cut off from Redis stops acting
 * on it before another can take it.
 */
export class RedisLock implements SharedLock {
  private heldUntil = 0;
  private readonly timer: NodeJS.Timeout;
  private readonly pending = new PendingOps();
  private ticking: Promise<void> | undefined;
  private stopped = false;

  constructor(
    readonly name: string,
    private readonly leases: RedisLeases,
    private readonly prefix: string,
    private readonly replica: string,
    private readonly timing: LeaseTiming,
    private readonly log: StateLog,
  ) {
    this.timer = setInterval(
      () => {
        void this.tick();
      },
      timing.renewEveryMs ?? Math.floor(timing.leaseMs / 3),
    );
    this.timer.unref();
    void this.tick();
  }

  private get key(): string {
    return `${this.prefix}lock:${this.name}`;
  }

  isHeld(): boolean {
    return !this.stopped && Date.now() < this.heldUntil;
  }

  /** One heartbeat (also run at construction); resolves once done. Never rejects. */
  tick(): Promise<void> {
    this.ticking ??= this.pending
      .track(this.attempt())
      .catch((err: unknown) => {
        this.log.warn(
          { lock: this.name, err: (err as Error).message },
          'could not take or renew the lock in Redis; retrying at the next heartbeat',
        );
      })
      .finally(() => {
        this.ticking = undefined;
      });
    return this.ticking;
  }

  private async attempt(): Promise<void> {
    if (this.stopped) return;
    const started = Date.now();
    const wasHeld = this.heldUntil > 0;
    const ok = wasHeld
      ? await this.leases.renew(this.key, this.replica, this.timing.leaseMs)
      : await this.leases.acquire(this.key, this.replica, this.timing.leaseMs);
    if (ok) {
      this.heldUntil = started + this.timing.leaseMs;
      if (!wasHeld) this.log.info({ lock: this.name, replica: this.replica }, 'this replica holds the lock');
    } else {
      if (wasHeld)
        this.log.warn({ lock: this.name }, 'lock lost (its lease ended); another replica may hold it');
      this.heldUntil = 0;
    }
  }

  /** Stops the heartbeat; `release`: frees the lock for another replica now, else at lease end. */
  async stop({ release, deadlineMs = 2_000 }: { release: boolean; deadlineMs?: number }): Promise<void> {
    clearInterval(this.timer);
    this.stopped = true;
    await this.pending.drain(deadlineMs);
    if (release && this.heldUntil > 0)
      await this.leases.release(this.key, this.replica).catch(() => undefined);
    this.heldUntil = 0;
  }
}
