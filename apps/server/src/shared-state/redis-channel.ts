import type { Redis } from 'ioredis';

import type { StateLog } from './redis-script';

/**
 * News for the other replicas (never state: what a message says is also in the store it is
 * about). Published on one replica, delivered to every other one (not back to its sender) over
 * Redis pub/sub on a connection of its own; a message sent while a replica's connection is down
 * is lost to it, so each user says what catches it up.
 */
export interface NewsChannel<T> {
  publish(message: T): Promise<void>;
  start(onMessage: (message: T) => void): Promise<void>;
  stop(): Promise<void>;
}

/** One replica: nobody else to tell. */
export class LocalNewsChannel<T> implements NewsChannel<T> {
  publish(): Promise<void> {
    return Promise.resolve();
  }

  start(): Promise<void> {
    return Promise.resolve();
  }

  stop(): Promise<void> {
    return Promise.resolve();
  }
}

/** Largest message read from the channel; anything larger is not ours. */
const MAX_MESSAGE_CHARS = 16_384;

export class RedisNewsChannel<T> implements NewsChannel<T> {
  private readonly channel: string;
  private subscriber: Redis | undefined;

  constructor(
    private readonly redis: Redis,
    prefix: string,
    name: string,
    private readonly replica: string,
    private readonly log: StateLog,
  ) {
    this.channel = `${prefix}news:${name}`;
  }

  async publish(message: T): Promise<void> {
    try {
      await this.redis.publish(this.channel, JSON.stringify({ from: this.replica, message }));
    } catch (err) {
      this.log.warn(
        { channel: this.channel, err: (err as Error).message },
        'could not tell the other replicas (Redis did not answer); they catch up on their own',
      );
    }
  }

  async start(onMessage: (message: T) => void): Promise<void> {
    const sub = (this.subscriber = this.redis.duplicate({ connectionName: 'periscope-server-news' }));
    sub.on('error', () => undefined); // the main connection reports Redis problems
    sub.on('message', (_channel: string, text: string) => {
      if (text.length > MAX_MESSAGE_CHARS) return;
      let m: { from?: unknown; message?: unknown };
      try {
        m = JSON.parse(text) as { from?: unknown; message?: unknown };
      } catch {
        return;
      }
      if (m.from === this.replica || m.message === undefined) return;
      try {
        onMessage(m.message as T);
      } catch (err) {
        this.log.warn(
          { channel: this.channel, err: (err as Error).message },
          'a replica news handler failed',
        );
      }
    });
    await sub.connect();
    await sub.subscribe(this.channel);
  }

  async stop(): Promise<void> {
    const sub = this.subscriber;
    this.subscriber = undefined;
    if (sub === undefined) return;
    await sub.quit().catch(() => undefined);
    sub.disconnect(false);
  }
}
