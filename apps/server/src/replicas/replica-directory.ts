import type { Redis } from 'ioredis';

import { OutageLog, type OutageLogger } from '../shared-state/redis-record';

/**
 * Where each live replica is reached: `<prefix>replica:<id>` = its internal base URL, under a
 * lease renewed while the replica runs (it expires when the replica dies; no stale address
 * outlives it by more than the lease). Only the address is here: bytes never go through Redis.
 */
export class ReplicaDirectory {
  private timer: NodeJS.Timeout | undefined;
  private url: string | undefined;
  private readonly renewals: OutageLog;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly replica: string,
    private readonly leaseMs: number,
    private readonly log: OutageLogger,
  ) {
    this.renewals = new OutageLog(log, {
      down: 'could not publish this replica address in Redis; other replicas cannot forward here until it is back (retrying)',
      back: 'replica address published again',
      backFields: { replica },
    });
  }

  private key(replica: string): string {
    return `${this.prefix}replica:${replica}`;
  }

  /** Publishes this replica's URL now and at every heartbeat (a third of the lease). */
  async publish(url: string): Promise<void> {
    this.url = url;
    this.timer ??= setInterval(
      () => {
        void this.renew();
      },
      Math.floor(this.leaseMs / 3),
    );
    this.timer.unref();
    await this.renew();
    this.log.info({ replica: this.replica, url }, 'replica address published for forwarding');
  }

  private async renew(): Promise<void> {
    if (this.url === undefined) return;
    try {
      await this.redis.set(this.key(this.replica), this.url, 'PX', this.leaseMs);
      this.renewals.ok();
    } catch (err) {
      this.renewals.failed(err);
    }
  }

  /** The URL `replica` is reached at, or undefined (it is gone, or never published one). */
  async urlOf(replica: string): Promise<string | undefined> {
    return (await this.redis.get(this.key(replica))) ?? undefined;
  }

  /** Stops the heartbeat and withdraws the address (a clean shutdown). */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.url === undefined) return;
    this.url = undefined;
    await this.redis.del(this.key(this.replica)).catch(() => undefined);
  }
}
