import { Module } from '@nestjs/common';

import { AgentCertificates } from './agent-certificates.service';
import { AgentRegistration } from './agent-registration.service';
import { AgentsController } from './agents.controller';

/** Agent registration and certificates: tokens, the agent CA, each cluster's current certificate. */
@Module({
  controllers: [AgentsController],
  providers: [AgentCertificates, AgentRegistration],
  exports: [AgentCertificates],
})
export class AgentsModule {}
