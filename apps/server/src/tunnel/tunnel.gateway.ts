import { Inject } from '@nestjs/common';
import { Ack, ConnectedSocket, MessageBody, SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import type { OnGatewayConnection } from '@nestjs/websockets';
import { RENEW_EVENT } from '@periscope/protocol';
import type { Socket } from 'socket.io';
import msgpackParser from 'socket.io-msgpack-parser';

import { AgentLinks, type RenewAnswer } from './agent-links';

export const AGENT_NAMESPACE = '/agent';

/**
 * The agents' side of the tunnel: Socket.IO namespace `/agent` on the tunnel listener
 * (TunnelIoAdapter), websocket transport only, msgpack parser, frames up to 2 MiB, pings every
 * 20 s. Every connection here was admitted by its client certificate (TunnelListener); it then
 * proves itself with a hello and takes over its cluster's link (AgentLinks).
 */
@WebSocketGateway({
  namespace: AGENT_NAMESPACE,
  transports: ['websocket'],
  parser: msgpackParser,
  serveClient: false,
  perMessageDeflate: false,
  maxHttpBufferSize: 2 * 1024 * 1024,
  pingInterval: 20_000,
  pingTimeout: 20_000,
})
export class TunnelGateway implements OnGatewayConnection<Socket> {
  // @Inject: the benchmarks load this file with tsx, which emits no decorator metadata.
  constructor(@Inject(AgentLinks) private readonly links: AgentLinks) {}

  handleConnection(socket: Socket): void {
    this.links.accept(socket);
  }

  /** A connected agent's CSR for its next certificate; answered only to an agent that waits for it. */
  @SubscribeMessage(RENEW_EVENT)
  renew(
    @ConnectedSocket() socket: Socket,
    @MessageBody() body: unknown,
    @Ack() ack: ((answer: RenewAnswer) => void) | undefined,
  ): void {
    if (typeof ack !== 'function') return;
    void this.links.renew(socket, body).then(ack);
  }
}
