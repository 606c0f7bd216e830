import { Module } from '@nestjs/common';

import { SessionIndex } from './session-index';
import { SessionsController } from './sessions.controller';
import { TerminalSessions } from './terminal-sessions.service';
import { TerminalSocketService } from './terminal-socket.service';

/** Terminal sessions of both kinds: the socket endpoint router, resume, and the sessions API. */
@Module({
  controllers: [SessionsController],
  providers: [TerminalSessions, TerminalSocketService, SessionIndex],
  exports: [TerminalSessions, TerminalSocketService],
})
export class TerminalModule {}
