import type { ClusterGateway } from '@periscope/cluster-ops/dist/lean';
import { newRid } from '@periscope/protocol';

export interface ShellSweeperOptions {
  gateway: Pick<ClusterGateway, 'reapShells'>;
  /** the shell namespace of this cluster */
  namespace: string;
  /** is the tunnel to the server up? (the server's reaper works then, with the live sessions) */
  connected: () => boolean;
  /** the longest session: the server's announcement, or the agent's configuration */
  maxSessionSeconds: () => number;
  graceSeconds: number;
  intervalSeconds: number;
  log: { info(o: object, m: string): void; warn(o: object, m: string): void };
}

/**
 * The agent's own sweep of its cluster's expired cluster-shell objects, for while the server is
 * unreachable (a server down for a day must not leave shell pods running with live tokens): at
 * start and every interval, when the tunnel is not up, it deletes the Pods, Secrets and per-session
 * identities of sessions whose objects are older than the maximum session length plus a grace
 * (by creation time) — no session may live that long, so nothing live is touched. While the
 * tunnel is up the server's reaper, which knows the live sessions, does this job.
 */
export class ShellSweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<string[]> | undefined;

  constructor(private readonly o: ShellSweeperOptions) {}

  start(): void {
    if (this.timer) return;
    this.tick();
    this.timer = setInterval(() => {
      this.tick();
    }, this.o.intervalSeconds * 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One sweep unless connected (or one is running); resolves to the session ids removed. Never rejects. */
  sweepOnce(): Promise<string[]> {
    if (this.running) return this.running;
    if (this.o.connected()) return Promise.resolve([]);
    const maxAgeSeconds = this.o.maxSessionSeconds() + this.o.graceSeconds;
    // The sweep's request id: the Audit-ID of its lists and deletes at the apiserver.
    const rid = newRid();
    this.running = this.o.gateway
      .reapShells(
        { namespace: this.o.namespace, liveSessionIds: [], graceMs: maxAgeSeconds * 1000 },
        { requestId: rid },
      )
      .then(
        (removed) => {
          for (const sessionId of removed)
            this.o.log.info(
              { sessionId, namespace: this.o.namespace, maxAgeSeconds, rid },
              'server unreachable: swept the objects of an expired cluster-shell session',
            );
          return removed;
        },
        (err: unknown) => {
          this.o.log.warn(
            { namespace: this.o.namespace, err: (err as Error).message, rid },
            'sweep of expired cluster-shell objects failed; the next one tries again',
          );
          return [];
        },
      )
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  private tick(): void {
    // sweepOnce never rejects; a throw before its promise exists is caught here.
    try {
      void this.sweepOnce();
    } catch (err) {
      this.o.log.warn({ err: (err as Error).message }, 'sweep of expired cluster-shell objects failed');
    }
  }
}
