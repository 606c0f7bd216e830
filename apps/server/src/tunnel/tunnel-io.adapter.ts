import type { INestApplicationContext } from '@nestjs/common';
import { IoAdapter } from '@nestjs/platform-socket.io';
import type { Server, ServerOptions } from 'socket.io';

import { TunnelListener } from './tunnel-listener';

/**
 * Puts the Socket.IO server of the tunnel gateway on the tunnel's own mTLS listener instead of
 * the public HTTP port. The browser terminals are raw `ws` routes on the HTTP server, not
 * gateways: this adapter never touches them. The tunnel closes itself at shutdown (TunnelService),
 * after the sessions that end over it, so the adapter leaves closing to it.
 */
export class TunnelIoAdapter extends IoAdapter {
  constructor(private readonly listener: TunnelListener) {
    super();
  }

  /** The adapter of an application whose module graph holds the tunnel module. */
  static of(app: INestApplicationContext): TunnelIoAdapter {
    return new TunnelIoAdapter(app.get(TunnelListener));
  }

  override createIOServer(_port: number, options?: Partial<ServerOptions>): Server {
    return this.listener.createSocketServer(options ?? {});
  }

  override close(): Promise<void> {
    return Promise.resolve();
  }
}
