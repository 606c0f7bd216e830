import type { IncomingMessage } from 'node:http';

import { Injectable, type OnModuleInit } from '@nestjs/common';
import { ERROR_CODE, TERMINAL_CLOSE, TERMINAL_ERROR, type ServerFrame } from '@periscope/protocol';
import { PinoLogger } from 'nestjs-pino';
import type { WebSocket } from 'ws';

import { AuditLog } from '../audit/audit-log';
import type { AuditEvent } from '../audit/audit-store';
import { AuthService } from '../auth/auth.service';
import { tierAtLeast } from '../auth/tiers';
import { DomainError } from '../common/domain-error';
import type { TerminalSession } from '../terminal/terminal-session';
import { TerminalSessions } from '../terminal/terminal-sessions.service';
import { TerminalSocketService } from '../terminal/terminal-socket.service';
import type { SessionTap } from './session-recorder';

/** Watchers per session. */
export const MAX_WATCHERS = 8;
/** A watcher whose socket holds more unsent output than this is dropped (it never slows the session). */
export const WATCHER_BUFFER_MAX = 8 * 1024 * 1024;

const WATCH_PATH = /^\/api\/sessions\/([0-9a-f-]{36})\/watch$/;

interface Watcher {
  ws: WebSocket;
  subject: string;
  since: number;
  refusedKeys: number;
}

/**
 * The watchers of one session: every output byte and size change goes to each (read-only: their
 * input is refused and never reaches the session); the operator and the watchers are told who is
 * watching (`watch` frame, the drawer's banner). Never pauses the session: a watcher that cannot
 * keep up is dropped.
 */
class WatchHub implements SessionTap {
  readonly watchers = new Set<Watcher>();
  readonly ready = true;

  constructor(
    private readonly session: TerminalSession,
    private readonly onLeave: (w: Watcher, why: string) => void,
  ) {}

  output(bytes: Uint8Array): void {
    for (const w of this.watchers) {
      if (w.ws.bufferedAmount > WATCHER_BUFFER_MAX) {
        this.drop(w, 'too_slow', {
          type: 'error',
          code: TERMINAL_ERROR.backpressure,
          message: 'this watch could not keep up with the session output and was closed; watch again',
          retryable: true,
        });
        continue;
      }
      w.ws.send(bytes, { binary: true });
    }
  }

  input(): void {
    // The operator's keystrokes reach watchers as the echo in the output.
  }

  resize(cols: number, rows: number): void {
    this.toWatchers({ type: 'status', phase: 'size', message: `${cols}x${rows}` });
  }

  close(): Promise<Record<string, unknown>> {
    for (const w of [...this.watchers])
      this.drop(w, 'session_ended', { type: 'closed', reason: 'the watched session ended' });
    return Promise.resolve({});
  }

  add(w: Watcher): void {
    this.watchers.add(w);
    this.announce();
  }

  drop(w: Watcher, why: string, last?: ServerFrame): void {
    if (!this.watchers.delete(w)) return;
    if (last && w.ws.readyState === w.ws.OPEN) w.ws.send(JSON.stringify(last));
    if (w.ws.readyState === w.ws.OPEN) w.ws.close(TERMINAL_CLOSE.normal, why);
    this.onLeave(w, why);
    this.announce();
  }

  /** Tells the operator and every watcher who is watching now. */
  announce(): void {
    const frame: ServerFrame = {
      type: 'watch',
      watchers: [...new Set([...this.watchers].map((w) => w.subject))],
    };
    this.session.notify(frame);
    this.toWatchers(frame);
  }

  private toWatchers(frame: ServerFrame): void {
    const text = JSON.stringify(frame);
    for (const w of this.watchers) if (w.ws.readyState === w.ws.OPEN) w.ws.send(text);
  }
}

/**
 * `GET /api/sessions/{id}/watch` (WebSocket): an admin watches a live session read-only. Start
 * and end are audited (`session_watch_start`, `session_watch_end`).
 */
@Injectable()
export class LiveWatchService implements OnModuleInit {
  private readonly hubs = new WeakMap<TerminalSession, WatchHub>();

  constructor(
    private readonly sockets: TerminalSocketService,
    private readonly sessions: TerminalSessions,
    private readonly auth: AuthService,
    private readonly audit: AuditLog,
    private readonly log: PinoLogger,
  ) {}

  onModuleInit(): void {
    this.sockets.registerSocket({
      pattern: WATCH_PATH,
      admit: (req, m) => this.admit(req, m[1] ?? ''),
    });
  }

  private admit(req: IncomingMessage, id: string): (ws: WebSocket) => void {
    const p = this.auth.require(req);
    if (!tierAtLeast(p.tier, 'admin'))
      throw new DomainError(
        ERROR_CODE.forbidden,
        `only admins may watch a live session (you are tier ${p.tier ?? 'none'})`,
      );
    const s = this.sessions.get(id);
    if (!s || s.state === 'ended') throw new DomainError(ERROR_CODE.notFound, `no live session ${id}`);
    if (s.info.subject === p.subject)
      throw new DomainError(ERROR_CODE.badRequest, 'this is your own session; it is open in your drawer');
    const hub = this.hubFor(s);
    if (hub.watchers.size >= MAX_WATCHERS)
      throw new DomainError(ERROR_CODE.unavailable, `this session already has ${MAX_WATCHERS} watchers`);
    return (ws) => {
      this.watch(s, hub, ws, p.subject);
    };
  }

  /** Writes a watch record without waiting for it; a failure is logged. */
  private record(e: AuditEvent): void {
    this.audit.write(e).catch((err: unknown) => {
      this.log.error(
        { sessionId: e.sessionId, verb: e.verb, err: (err as Error).message },
        'could not audit a watch',
      );
    });
  }

  private hubFor(s: TerminalSession): WatchHub {
    let hub = this.hubs.get(s);
    if (!hub) {
      hub = new WatchHub(s, (w, why) => {
        this.record({
          verb: 'session_watch_end',
          actor: w.subject,
          cluster: s.info.cluster,
          sessionId: s.id,
          body: {
            session_id: s.id,
            owner: s.info.subject,
            watcher: w.subject,
            duration_ms: Date.now() - w.since,
            end_reason: why,
            ...(w.refusedKeys > 0 ? { refused_input_frames: w.refusedKeys } : {}),
          },
        });
        this.log.info({ sessionId: s.id, watcher: w.subject, why }, 'watch ended');
      });
      this.hubs.set(s, hub);
      s.addTap(hub);
    }
    return hub;
  }

  private watch(s: TerminalSession, hub: WatchHub, ws: WebSocket, subject: string): void {
    if (s.state === 'ended') {
      ws.close(TERMINAL_CLOSE.sessionGone, 'session ended');
      return;
    }
    const w: Watcher = { ws, subject, since: Date.now(), refusedKeys: 0 };
    this.record({
      verb: 'session_watch_start',
      actor: subject,
      cluster: s.info.cluster,
      sessionId: s.id,
      body: { session_id: s.id, owner: s.info.subject, watcher: subject, kind: s.info.kind },
    });
    this.log.info({ sessionId: s.id, watcher: subject }, 'watch started');
    const { info } = s;
    const recent = s.recentOutput();
    ws.send(
      JSON.stringify({
        type: 'hello',
        sessionId: info.sessionId,
        kind: info.kind,
        cluster: info.cluster,
        ...(info.namespace !== undefined ? { namespace: info.namespace } : {}),
        ...(info.pod !== undefined ? { pod: info.pod } : {}),
        ...(info.mode !== undefined ? { mode: info.mode } : {}),
      } satisfies ServerFrame),
    );
    ws.send(JSON.stringify({ type: 'status', phase: 'size', message: `${recent.cols}x${recent.rows}` }));
    for (const b of recent.bytes) ws.send(b, { binary: true });
    ws.on('message', (_data: Buffer, isBinary: boolean) => {
      if (!isBinary) return; // control frames of a watcher (resize, keepalive) change nothing
      w.refusedKeys++;
      if (w.refusedKeys <= 3 && ws.readyState === ws.OPEN)
        ws.send(
          JSON.stringify({
            type: 'error',
            code: TERMINAL_ERROR.readOnly,
            message: 'watching is read-only: your keystrokes are not sent to the session',
            retryable: true,
          } satisfies ServerFrame),
        );
    });
    const leave = (): void => {
      hub.drop(w, 'watcher_left');
    };
    ws.on('close', leave);
    ws.on('error', leave);
    hub.add(w);
  }
}
