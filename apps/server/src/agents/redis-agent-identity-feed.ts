import type { IdentityChangeFeed } from './agent-certificates.service';
import { LocalNewsChannel, RedisNewsChannel, type NewsChannel } from '../shared-state/redis-channel';
import type { SharedState } from '../shared-state/shared-state.service';

/**
 * Agent identity changes (a registration, a revocation) told to every replica: the records stay
 * where they are (the Secret beside the CA Secret, compare-and-set); the news only says "cluster
 * X changed, read again", so the replica holding X's tunnel drops a connection whose certificate
 * is no longer current at once. News lost while Redis is away is caught up by the periodic check
 * (AgentCertificates).
 */
class IdentityFeed implements IdentityChangeFeed {
  constructor(
    readonly shared: boolean,
    private readonly channel: NewsChannel<{ cluster: string }>,
  ) {}

  announce(cluster: string): Promise<void> {
    return this.channel.publish({ cluster });
  }

  start(onChange: (cluster: string) => void): Promise<void> {
    return this.channel.start((m) => {
      if (typeof m.cluster === 'string') onChange(m.cluster);
    });
  }

  stop(): Promise<void> {
    return this.channel.stop();
  }
}

/** The identity change feed: none without Redis (one replica), else Redis pub/sub. */
export function identityChangeFeed(shared: SharedState | undefined): IdentityChangeFeed {
  const r = shared?.redisStore;
  if (r === undefined) return new IdentityFeed(false, new LocalNewsChannel());
  return new IdentityFeed(true, new RedisNewsChannel(r.redis, r.prefix, 'agent-identity', r.replica, r.log));
}
