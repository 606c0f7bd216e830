import { Module } from '@nestjs/common';
import { Metrics } from '@periscope/observability';
import { PinoLogger } from 'nestjs-pino';

import { AgentCertificates } from '../agents/agent-certificates.service';
import { AgentsModule } from '../agents/agents.module';
import { SERVER_CONFIG } from '../config/config.module';
import { AgentLinks } from './agent-links';
import { AgentStatusController } from './agent-status.controller';
import { AgentStatus } from './agent-status.service';
import { AgentStatusShared } from './agent-status-shared';
import { TunnelListener } from './tunnel-listener';
import { buildTunnel, TUNNEL_PARTS, TunnelService, type TunnelParts } from './tunnel.service';
import { TunnelGateway } from './tunnel.gateway';

/**
 * The agent tunnel: its own mTLS listener, the Socket.IO gateway on it (through TunnelIoAdapter),
 * one link per agent cluster, metrics, readiness, and the admin's view of the agents. Exports the
 * links: the cluster seam (AgentGateway) and the reaper reach agents through them.
 */
@Module({
  imports: [AgentsModule],
  controllers: [AgentStatusController],
  providers: [
    {
      provide: TUNNEL_PARTS,
      inject: [SERVER_CONFIG, AgentCertificates, Metrics, PinoLogger],
      useFactory: buildTunnel,
    },
    { provide: AgentLinks, inject: [TUNNEL_PARTS], useFactory: (t: TunnelParts) => t.links },
    { provide: TunnelListener, inject: [TUNNEL_PARTS], useFactory: (t: TunnelParts) => t.listener },
    TunnelGateway,
    TunnelService,
    AgentStatus,
    AgentStatusShared,
  ],
  exports: [AgentLinks, AgentStatusShared],
})
export class TunnelModule {}
