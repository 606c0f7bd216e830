import { Controller, Get, Inject } from '@nestjs/common';

import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import { APP_VERSION } from '../version';

/** Public facts about this deployment the SPA needs before login. */
@Controller('meta')
export class MetaController {
  constructor(@Inject(SERVER_CONFIG) private readonly config: ServerConfig) {}

  @Get()
  meta(): {
    version: string;
    authMode: 'oidc' | 'dev';
    clusterShellEnabled: boolean;
    publicUrl: string;
    allowedOrigins: string[];
  } {
    return {
      version: APP_VERSION,
      authMode: this.config.authMode,
      clusterShellEnabled: this.config.clusterShell.enabled,
      // The page compares its own origin with these: terminal sockets from any other are refused.
      publicUrl: this.config.http.publicUrl,
      allowedOrigins: this.config.http.allowedOrigins,
    };
  }
}
