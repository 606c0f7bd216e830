import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A loopback TCP proxy to put between two processes (the agent and the server's tunnel
 * listener) so a test can cut the network between them: `sever()` destroys every connection
 * going through it and holds new ones; `restore()` lets them through again.
 *
 * A connection attempt made while the proxy is down, or while the target is not listening yet
 * (a server being restarted), is held open rather than refused: it is connected to the target
 * as soon as the network is back and the target listens, with what the client already sent.
 * That is what a client sees from a partition (its attempt hangs until the path is back, or
 * until its own connect timeout) and it keeps the test from waiting out a reconnect backoff.
 */
export class TcpProxy {
  private server: Server | undefined;
  private down = false;
  private readonly pairs = new Set<{ client: Socket; upstream: Socket | undefined }>();
  private readonly held = new Set<() => void>();
  /** Connections accepted since start (a reconnect shows up here). */
  accepted = 0;

  constructor(
    private readonly target: { host: string; port: number },
    /** How long a held connection waits for the network or the target before it is dropped. */
    private readonly holdMs = 60_000,
  ) {}

  get port(): number {
    const a = this.server?.address();
    if (!a || typeof a === 'string') throw new Error('the proxy is not listening');
    return a.port;
  }

  get isDown(): boolean {
    return this.down;
  }

  /** Open connections (client side) through the proxy. */
  get connections(): number {
    return this.pairs.size;
  }

  async start(port = 0): Promise<void> {
    const server = createServer((client) => {
      this.onClient(client);
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        resolve();
      });
    });
  }

  private onClient(client: Socket): void {
    this.accepted++;
    const pair: { client: Socket; upstream: Socket | undefined } = { client, upstream: undefined };
    this.pairs.add(pair);
    const early: Buffer[] = [];
    const keep = (b: Buffer): void => {
      early.push(b);
    };
    client.on('data', keep);
    client.on('error', () => undefined);
    let gaveUp = false;
    const giveUp = setTimeout(() => {
      gaveUp = true;
      client.destroy();
    }, this.holdMs);
    giveUp.unref();
    client.once('close', () => {
      clearTimeout(giveUp);
      gaveUp = true;
      pair.upstream?.destroy();
      this.pairs.delete(pair);
    });

    const attempt = (): void => {
      if (gaveUp) return;
      if (this.down) {
        // Wait for restore().
        const wake = (): void => {
          this.held.delete(wake);
          attempt();
        };
        this.held.add(wake);
        return;
      }
      const upstream = connect(this.target.port, this.target.host);
      upstream.once('error', () => {
        upstream.destroy();
        // The target is not listening (yet): try again shortly.
        if (pair.upstream === undefined) setTimeout(attempt, 200).unref();
      });
      upstream.once('connect', () => {
        if (gaveUp || this.down) {
          upstream.destroy();
          if (!gaveUp) attempt();
          return;
        }
        clearTimeout(giveUp);
        pair.upstream = upstream;
        upstream.on('error', () => undefined);
        client.off('data', keep);
        for (const b of early) upstream.write(b);
        early.length = 0;
        client.pipe(upstream);
        upstream.pipe(client);
        upstream.once('close', () => client.destroy());
      });
    };
    attempt();
  }

  /** Cuts the network: every connection through the proxy is destroyed, new ones are held. */
  sever(): void {
    this.down = true;
    for (const p of [...this.pairs]) {
      if (p.upstream === undefined) continue; // a held attempt stays held
      p.client.destroy();
      p.upstream.destroy();
    }
  }

  /** The network is back: held connection attempts go through, new ones too. */
  restore(): void {
    this.down = false;
    for (const wake of [...this.held]) wake();
  }

  async stop(): Promise<void> {
    this.down = true;
    for (const p of this.pairs) {
      p.client.destroy();
      p.upstream?.destroy();
    }
    this.held.clear();
    const server = this.server;
    this.server = undefined;
    if (server)
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      });
  }
}
