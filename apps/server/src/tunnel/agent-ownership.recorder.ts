import { Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';

import { AgentLinks } from './agent-links';
import { SharedState } from '../shared-state/shared-state.service';

/**
 * Records which replica holds each agent cluster's tunnel: taken over when an agent completes its
 * handshake here (it may have come from another replica), released when its connection drops and
 * no newer one replaced it. A record for now; routing reads it later.
 */
@Injectable()
export class AgentOwnershipRecorder implements OnApplicationBootstrap {
  constructor(
    private readonly links: AgentLinks,
    private readonly shared: SharedState,
    private readonly log: PinoLogger,
  ) {}

  onApplicationBootstrap(): void {
    const owners = this.shared.agents;
    const failed = (cluster: string) => (err: unknown) => {
      this.log.warn(
        { cluster, err: (err as Error).message },
        'could not record the agent tunnel owner in the shared state',
      );
    };
    this.links.onAgentReady((cluster) => {
      owners.claim(cluster, { takeOver: true }).catch(failed(cluster));
    });
    this.links.goneListeners.push((cluster) => {
      // A replaced connection drops after its successor is up: the record stays.
      if (this.links.link(cluster)?.connected === true) return;
      owners.release(cluster).catch(failed(cluster));
    });
  }
}
