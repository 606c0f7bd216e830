import type { IncomingMessage } from 'node:http';
import { createServer, type Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';

import type { Logger } from 'pino';
import { Server, type ServerOptions } from 'socket.io';

import type { TunnelTls } from '../agents/agent-certificates.service';
import type { AdmissionRefusal, TunnelAdmission } from './tunnel-admission';
import { refusalResponse } from './tunnel-admission';

export interface TunnelListenerOptions {
  host: string;
  port: number;
  admission: TunnelAdmission;
  log: Logger;
  onRefused?: (reason: AdmissionRefusal) => void;
}

/** The agent an upgrade was admitted for: its cluster and certificate (SHA-256 fingerprint). */
export interface AdmittedAgent {
  cluster: string;
  fingerprint: string;
}

const ADMITTED = Symbol('periscope.admittedAgent');

interface AdmittedRequest extends IncomingMessage {
  [ADMITTED]?: AdmittedAgent;
}

/** Who the listener admitted this request for; undefined when it never went through admission. */
export function admittedAgent(req: IncomingMessage): AdmittedAgent | undefined {
  return (req as AdmittedRequest)[ADMITTED];
}

const TLS_OPTIONS = { requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' } as const;

/**
 * The tunnel's own listener, apart from the public HTTP port: TLS asking for a client
 * certificate, with admission (TunnelAdmission) in front of the Socket.IO engine's upgrade, so a
 * refusal is one uniform 401 (the engine would answer 400 with the reason) and the identity check
 * may wait for the record store. Refusals are decided (and logged with a reason) by admission,
 * not by a silent TLS abort. It carries one Socket.IO server, made by TunnelIoAdapter for the
 * tunnel gateway; anything but Socket.IO requests gets a 404.
 */
export class TunnelListener {
  /** the HTTPS server; its certificate is set when it starts listening */
  readonly server: HttpsServer;
  readonly refusals = new Map<AdmissionRefusal, number>();
  private socketServer: Server | undefined;
  private listening = false;

  constructor(private readonly options: TunnelListenerOptions) {
    this.server = createServer({ ...TLS_OPTIONS });
    // Registered before Socket.IO attaches: the engine passes on what is not its own.
    this.server.on('request', (req, res) => {
      if (!(req.url ?? '').startsWith('/socket.io/')) {
        res.writeHead(404).end();
      }
    });
  }

  /** The Socket.IO server on this listener (once the gateway is connected). */
  get io(): Server | undefined {
    return this.socketServer;
  }

  get isListening(): boolean {
    return this.listening;
  }

  get address(): { host: string; port: number } {
    const a = this.server.address();
    if (!a || typeof a === 'string') throw new Error('tunnel server is not listening');
    return { host: a.address, port: a.port };
  }

  /**
   * Attaches the one Socket.IO server of the tunnel (TunnelIoAdapter calls it for the gateway),
   * with admission before the engine sees an upgrade. Only connections admitted here reach it.
   */
  createSocketServer(options: Partial<ServerOptions>): Server {
    if (this.socketServer)
      throw new Error('the tunnel listener carries one Socket.IO server (the agent gateway)');
    const io = new Server(this.server, {
      ...options,
      // Admission ran in the upgrade handler below; nothing reaches the engine without it.
      allowRequest: (req, callback) => {
        callback(null, admittedAgent(req) !== undefined);
      },
    });
    const engineUpgrade = this.server.listeners('upgrade') as ((...a: unknown[]) => void)[];
    this.server.removeAllListeners('upgrade');
    this.server.on('upgrade', (req: AdmittedRequest, socket: Duplex, head: Buffer) => {
      socket.on('error', () => undefined);
      void this.options.admission.check(req).then((verdict) => {
        if ('refused' in verdict) {
          this.refuse(req, socket, verdict.refused, verdict.detail);
          return;
        }
        req[ADMITTED] = { cluster: verdict.cluster, fingerprint: verdict.cert.fingerprint };
        for (const l of engineUpgrade) l.call(this.server, req, socket, head);
      });
    });
    io.of('/').use((_socket, next) => {
      next(new Error('use the /agent namespace'));
    });
    this.socketServer = io;
    return io;
  }

  private refuse(req: IncomingMessage, socket: Duplex, refused: AdmissionRefusal, detail: string): void {
    this.refusals.set(refused, (this.refusals.get(refused) ?? 0) + 1);
    this.options.onRefused?.(refused);
    this.options.log.warn(
      { reason: refused, detail, remote: req.socket.remoteAddress },
      'agent connection refused',
    );
    socket.on('error', () => undefined);
    if (socket.writable) socket.end(refusalResponse(refused));
    socket.destroy();
  }

  /** Serves with a certificate issued by the agent CA, which also signs the client certificates. */
  async listen(tls: TunnelTls): Promise<void> {
    this.server.setSecureContext({
      minVersion: TLS_OPTIONS.minVersion,
      ca: tls.caPem,
      cert: tls.certPem,
      key: tls.keyPem,
    });
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.listening = true;
  }

  /** Closes the Socket.IO server (its connections) and the listener. */
  async close(): Promise<void> {
    this.listening = false;
    const io = this.socketServer;
    await new Promise<void>((resolve) => {
      if (io) {
        void io.close(() => {
          resolve();
        });
      } else if (this.server.listening) {
        this.server.close(() => {
          resolve();
        });
      } else resolve();
    });
  }
}
