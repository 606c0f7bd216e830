import { Body, Controller, Delete, Get, HttpCode, Param, Req, UseGuards } from '@nestjs/common';

import { AuthGuard, type AuthedRequest } from '../auth/auth.guard';
import { tierAtLeast } from '../auth/tiers';
import { SessionIndex } from './session-index';
import { EndSessionDto } from './sessions.dto';
import { TerminalSessions, type SessionView } from './terminal-sessions.service';

/** Live terminal sessions (cluster shell and pod exec): yours, or all of them for admins. */
@Controller('sessions')
@UseGuards(AuthGuard)
export class SessionsController {
  constructor(
    private readonly sessions: TerminalSessions,
    private readonly index: SessionIndex,
  ) {}

  /** Every replica answers the same (several replicas: see SessionIndex). */
  @Get()
  async list(@Req() req: AuthedRequest): Promise<{ sessions: SessionView[] }> {
    return { sessions: await this.index.list(req.principal, tierAtLeast(req.principal.tier, 'admin')) };
  }

  /**
   * Ends a session: its owner, or an admin (audited either way). The optional `{reason}` reaches
   * the close audit record and the banner of the person whose session it was.
   */
  @Delete(':id')
  @HttpCode(204)
  async end(@Param('id') id: string, @Body() body: EndSessionDto, @Req() req: AuthedRequest): Promise<void> {
    await this.sessions.endBy(id, req.principal, tierAtLeast(req.principal.tier, 'admin'), body.reason);
  }
}
