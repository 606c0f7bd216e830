import { Body, Controller, Param, Post, Req } from '@nestjs/common';
import type { Request } from 'express';

import { OpenShellDto } from './cluster-shell.dto';
import { ShellAdmission, shellSocketPath } from './shell-admission.service';

@Controller('clusters/:cluster/shell')
export class ClusterShellController {
  constructor(private readonly admission: ShellAdmission) {}

  /**
   * Runs every admission check and reserves a cap slot; answers a single-use ticket (30 s) for
   * the shell socket, or the documented error body. Browsers cannot read the body of a refused
   * WebSocket upgrade, so the SPA asks here first.
   */
  @Post('sessions')
  async create(
    @Param('cluster') cluster: string,
    @Req() req: Request,
    @Body() body: OpenShellDto,
  ): Promise<{ sessionId: string; ticket: string; expiresAt: string; socketPath: string }> {
    const a = await this.admission.admitFresh(req, cluster, body.mode);
    const scope = shellSocketPath(a.cluster);
    const { ticket, expiresAt } = await this.admission.tickets.issue({ ...a, scope });
    return {
      sessionId: a.sessionId,
      ticket,
      expiresAt: expiresAt.toISOString(),
      socketPath: `${scope}?ticket=${ticket}`,
    };
  }
}
