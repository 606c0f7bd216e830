import {
  Agent,
  request,
  type ClientRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

import { HOP_BY_HOP } from './replica-routes';
import { REPLICA_HEADER } from './replica-signature';

/** A connection to another replica that is not up within this time fails with 503 (it is gone). */
export const CONNECT_DEADLINE_MS = 5_000;
/** A forwarded HTTP request whose connection stays silent this long is cut. */
const IDLE_DEADLINE_MS = 120_000;
/** An owner that accepted the connection but does not answer an upgrade within this time: 503. */
export const UPGRADE_ANSWER_DEADLINE_MS = 30_000;
/** An owner's refusal of an upgrade is passed on up to this size. */
const REFUSAL_MAX_BYTES = 64 * 1024;

/** What a forward needs: where, the signature header, who the client is, and what to say on failure. */
export interface ForwardTarget {
  /** the owner's base URL, `http://host:port` */
  url: URL;
  /** the REPLICA_HEADER value signed for this request */
  signature: string;
  /** the client's address (X-Forwarded-For at the owner) */
  client: string;
  /** the owner could not be reached: answer 503 (`why` for the message and the log) */
  unreachable(why: string): void;
}

function forwardedHeaders(
  headers: IncomingHttpHeaders,
  t: ForwardTarget,
  keepUpgrade: boolean,
): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || k === REPLICA_HEADER || k === 'x-forwarded-for') continue;
    if (HOP_BY_HOP.has(k) && !(keepUpgrade && (k === 'connection' || k === 'upgrade'))) continue;
    out[k] = v;
  }
  // Host, Origin, Cookie and the body go as they came: the owner's own checks apply unchanged.
  out[REPLICA_HEADER] = t.signature;
  out['x-forwarded-for'] = t.client;
  return out;
}

/** The request to the owner replica carrying `req` (method, path, forwarded headers). */
function ownerRequest(
  req: IncomingMessage,
  t: ForwardTarget,
  upgrade: boolean,
  agent: Agent | false,
): ClientRequest {
  return request({
    protocol: 'http:',
    hostname: t.url.hostname,
    port: t.url.port || 80,
    method: req.method,
    path: req.url,
    headers: forwardedHeaders(req.headers, t, upgrade),
    agent,
  });
}

/** Fails the request when its socket is not connected within the deadline (reused sockets are). */
function connectDeadline(req: ReturnType<typeof request>): void {
  const timer = setTimeout(() => {
    req.destroy(new Error(`no connection within ${CONNECT_DEADLINE_MS / 1000} s`));
  }, CONNECT_DEADLINE_MS);
  timer.unref();
  req.once('socket', (s: Socket) => {
    s.setNoDelay(true);
    if (!s.connecting) clearTimeout(timer);
    else
      s.once('connect', () => {
        clearTimeout(timer);
      });
  });
  req.once('close', () => {
    clearTimeout(timer);
  });
}

/**
 * Forwards HTTP requests and terminal sockets to the replica that owns them, over Node's own HTTP
 * client and raw sockets (streams piped: a full write buffer pauses the other side, as the
 * tunnel's bounded buffers do). Bounded: at most `maxHttp` requests and `maxSockets` sockets in
 * flight; beyond, the caller answers 503.
 */
export class ReplicaRelay {
  // Idle kept-alive sockets close after 4 s, before the owner's own keep-alive timeout (Node's 5 s)
  // closes them under a request reusing one; a request in flight has its own idle deadline.
  private readonly agent = new Agent({
    keepAlive: true,
    maxSockets: 256,
    maxFreeSockets: 16,
    timeout: 4_000,
  });
  private readonly sockets = new Set<Duplex>();
  private httpInFlight = 0;

  constructor(
    private readonly maxHttp = 1_024,
    private readonly maxSockets = 4_096,
  ) {}

  /** Sockets relayed now (both sides counted once). */
  get openSockets(): number {
    return this.sockets.size;
  }

  get full(): { http: boolean; sockets: boolean } {
    return { http: this.httpInFlight >= this.maxHttp, sockets: this.sockets.size >= this.maxSockets };
  }

  /** Passes an HTTP request (body streamed) to the owner and its answer back. */
  http(req: IncomingMessage, res: ServerResponse, t: ForwardTarget): void {
    this.httpInFlight++;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      this.httpInFlight--;
    };
    const out = ownerRequest(req, t, false, this.agent);
    connectDeadline(out);
    out.setTimeout(IDLE_DEADLINE_MS, () => out.destroy(new Error('the owner replica went silent')));
    out.on('response', (answer) => {
      const headers: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(answer.headers))
        if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = v;
      res.writeHead(answer.statusCode ?? 502, headers);
      answer.pipe(res);
      answer.on('error', () => res.destroy());
      answer.once('end', finish);
    });
    out.on('error', (err) => {
      finish();
      if (!res.headersSent) t.unreachable(err.message);
      else res.destroy();
    });
    // The browser went away: the forwarded request goes too.
    res.once('close', () => {
      finish();
      if (!res.writableFinished) out.destroy();
    });
    req.pipe(out);
  }

  /**
   * Passes a WebSocket upgrade to the owner: its 101 (or refusal) goes back to the browser as it
   * came, then both sockets are piped into each other until either side closes.
   */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, t: ForwardTarget): void {
    const out = ownerRequest(req, t, true, false);
    connectDeadline(out);
    out.setTimeout(UPGRADE_ANSWER_DEADLINE_MS, () =>
      out.destroy(new Error(`no answer to the upgrade within ${UPGRADE_ANSWER_DEADLINE_MS / 1000} s`)),
    );
    let answered = false;
    const browserGone = (): void => {
      if (!answered) out.destroy();
    };
    socket.once('close', browserGone);
    out.on('upgrade', (answer: IncomingMessage, upstream: Socket, upstreamHead: Buffer) => {
      answered = true;
      socket.off('close', browserGone);
      upstream.setTimeout(0); // a terminal may stay quiet for hours; the session's heartbeat watches it
      if (socket.destroyed) {
        upstream.destroy();
        return;
      }
      const lines = [`HTTP/1.1 ${answer.statusCode ?? 101} ${answer.statusMessage ?? 'Switching Protocols'}`];
      for (let i = 0; i + 1 < answer.rawHeaders.length; i += 2)
        lines.push(`${answer.rawHeaders[i] ?? ''}: ${answer.rawHeaders[i + 1] ?? ''}`);
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (upstreamHead.length > 0) socket.write(upstreamHead);
      if (head.length > 0) upstream.write(head);
      this.splice(socket, upstream);
    });
    out.on('response', (answer: IncomingMessage) => {
      // The owner refused (401, 403, 404, 429, 503...): its status and body, bounded, as it sent them.
      answered = true;
      const chunks: Buffer[] = [];
      let size = 0;
      answer.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= REFUSAL_MAX_BYTES) chunks.push(c);
        else answer.destroy();
      });
      const send = (): void => {
        const body = Buffer.concat(chunks);
        const type = answer.headers['content-type'] ?? 'application/json';
        socket.end(
          Buffer.concat([
            Buffer.from(
              `HTTP/1.1 ${answer.statusCode ?? 502} ${answer.statusMessage ?? 'Error'}\r\nContent-Type: ${type}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
            ),
            body,
          ]),
        );
      };
      answer.once('end', send);
      answer.once('error', () => socket.destroy());
    });
    out.on('error', (err) => {
      if (!answered && !socket.destroyed) t.unreachable(err.message);
      else socket.destroy();
    });
    out.end();
  }

  /** Two sockets into each other with backpressure; either closing or failing ends both. */
  private splice(a: Duplex, b: Socket): void {
    if ('setNoDelay' in a && typeof (a as Socket).setNoDelay === 'function') (a as Socket).setNoDelay(true);
    b.setNoDelay(true);
    this.sockets.add(a);
    const end = (): void => {
      this.sockets.delete(a);
      a.destroy();
      b.destroy();
    };
    a.once('close', end);
    b.once('close', end);
    a.on('error', end);
    b.on('error', end);
    a.pipe(b);
    b.pipe(a);
  }

  /** Destroys every relayed socket's browser side (its owner side follows); how many there were. */
  dropSockets(): number {
    const n = this.sockets.size;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    return n;
  }

  /** Shutdown: every relayed socket and kept-alive connection closes. */
  close(): void {
    this.dropSockets();
    this.agent.destroy();
  }
}
