import { Inject, Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { PinoLogger } from 'nestjs-pino';

import { CapReservations, InMemoryCapSlots, type CapSlots } from './cap-slots';
import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import { InMemoryLock, InMemoryOwnership, type Ownership, type SharedLock } from './ports';
import { RedisCapSlots } from './redis-cap-slots';
import { closeRedis, connectRedis, redactedRedisUrl, redisClient } from './redis-client';
import { RedisLeases, RedisLock, RedisOwnership, type LeaseTiming } from './redis-leases';
import { replicaId } from './replica-id';

/** Leases of cap slots and ownership records: a dead replica's end this long after it stops. */
export const RECORD_LEASE: LeaseTiming = { leaseMs: 30_000 };
/** The reaper lock: another replica takes it this long after its holder stops renewing. */
export const LOCK_LEASE: LeaseTiming = { leaseMs: 60_000 };

interface Stoppable {
  stop(o: { release: boolean }): Promise<void>;
}

/**
 * The state server replicas share, behind narrow ports: in memory (PERISCOPE_REDIS_URL unset: one
 * replica, today's behaviour) or in Redis. Connects at module init within a deadline (the server
 * does not start without its Redis); at shutdown, after the sessions ended, frees what this
 * replica holds and closes the connection.
 */
@Injectable()
export class SharedState implements OnModuleInit, OnApplicationShutdown {
  readonly replicaId: string;
  /** which replica holds which terminal session (a record: routing comes later) */
  readonly sessions: Ownership;
  /** which replica holds which agent cluster's tunnel (a record: routing comes later) */
  readonly agents: Ownership;
  private readonly redis: Redis | undefined;
  private readonly leases: RedisLeases | undefined;
  private readonly parts: Stoppable[] = [];
  private readonly prefix: string;

  constructor(
    @Inject(SERVER_CONFIG) private readonly config: ServerConfig,
    private readonly log: PinoLogger,
  ) {
    const s = config.sharedState;
    this.replicaId = replicaId(s.replicaId);
    this.prefix = s.keyPrefix;
    if (s.redis) {
      this.redis = redisClient(s.redis);
      // ioredis reports every failed (re)connect here; without a listener it would print them raw.
      let lastError = '';
      this.redis.on('error', (err: Error) => {
        if (err.message === lastError) return; // one line per distinct failure, not one per retry
        lastError = err.message;
        this.log.warn(
          { redis: redactedRedisUrl(s.redis?.url ?? ''), err: err.message },
          'Redis connection problem',
        );
      });
      this.redis.on('ready', () => {
        lastError = '';
      });
      this.leases = new RedisLeases(this.redis);
      this.sessions = this.ownership('session');
      this.agents = this.ownership('agent');
    } else {
      this.sessions = new InMemoryOwnership('session', this.replicaId);
      this.agents = new InMemoryOwnership('agent', this.replicaId);
    }
  }

  /** The Redis connection and key prefix, for the adapters of other folders (undefined: in memory). */
  get redisStore(): { redis: Redis; prefix: string; replica: string; log: PinoLogger['logger'] } | undefined {
    if (this.redis === undefined) return undefined;
    return { redis: this.redis, prefix: this.prefix, replica: this.replicaId, log: this.log.logger };
  }

  /** Whether the state is shared through Redis (several replicas may run). */
  get shared(): boolean {
    return this.redis !== undefined;
  }

  async onModuleInit(): Promise<void> {
    const redis = this.config.sharedState.redis;
    if (this.redis === undefined || redis === undefined) {
      this.log.info(
        { replica: this.replicaId },
        'shared state in memory (one replica; PERISCOPE_REDIS_URL unset)',
      );
      return;
    }
    await connectRedis(this.redis, redis.url);
    this.log.info(
      { replica: this.replicaId, redis: redactedRedisUrl(redis.url), keyPrefix: this.prefix },
      'shared state in Redis',
    );
  }

  /** The cap slots of one kind of session (`cluster_shell`), with its server-wide limits. */
  capSlots(pool: string, perUser: number, perCluster: number): CapSlots {
    if (this.redis === undefined) return new InMemoryCapSlots(new CapReservations(perUser, perCluster));
    const slots = new RedisCapSlots(
      pool,
      this.redis,
      this.prefix,
      this.replicaId,
      perUser,
      perCluster,
      RECORD_LEASE,
      this.log.logger,
    );
    this.parts.push(slots);
    return slots;
  }

  /** A lock one replica holds at a time (in memory: always this one). */
  lock(name: string): SharedLock {
    if (this.redis === undefined || this.leases === undefined) return new InMemoryLock(name);
    const lock = new RedisLock(name, this.leases, this.prefix, this.replicaId, LOCK_LEASE, this.log.logger);
    this.parts.push(lock);
    return lock;
  }

  private ownership(kind: string): Ownership {
    if (this.leases === undefined) throw new Error('ownership records in Redis need a Redis connection');
    const o = new RedisOwnership(
      kind,
      this.leases,
      this.prefix,
      this.replicaId,
      RECORD_LEASE,
      this.log.logger,
    );
    this.parts.push(o);
    return o;
  }

  /**
   * After the sessions ended (their slots are freed as they end): frees what is left of this
   * replica's, then closes the connection, each within a deadline.
   */
  async onApplicationShutdown(): Promise<void> {
    if (this.redis === undefined) return;
    await Promise.all(this.parts.map((p) => p.stop({ release: true })));
    await closeRedis(this.redis);
  }
}
