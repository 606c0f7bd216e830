import { Global, Module, RequestMethod, type DynamicModule } from '@nestjs/common';
import { LoggerModule } from 'nestjs-pino';

import { HealthController, LivenessController } from './health.controller';
import { Metrics } from './metrics';
import { OpsListener } from './ops-listener';
import { Readiness } from './readiness';

/** Headers and fields that must never reach a log line. */
export const REDACTED_LOG_PATHS = [
  'req.headers.cookie',
  'req.headers.authorization',
  'req.headers["sec-websocket-protocol"]',
  'res.headers["set-cookie"]',
  '*.token',
  '*.password',
  '*.clientSecret',
];

export interface ObservabilityOptions {
  service: string;
  level: string;
  /**
   * What the application's own listener answers: `all` (/healthz, /readyz, /metrics; the agent,
   * whose listener is private) or `liveness` (/healthz only; the server, whose listener is public:
   * readiness and metrics go to the OpsListener on another port).
   */
  routes?: 'all' | 'liveness';
}

/** JSON logs (pino), /healthz, /readyz and /metrics: the same for server and agent. */
@Global()
@Module({})
export class ObservabilityModule {
  static forRoot(options: ObservabilityOptions): DynamicModule {
    return {
      module: ObservabilityModule,
      imports: [
        LoggerModule.forRoot({
          forRoutes: [{ path: '{*path}', method: RequestMethod.ALL }],
          pinoHttp: {
            level: options.level,
            base: { service: options.service },
            redact: { paths: REDACTED_LOG_PATHS, censor: '<redacted>' },
            autoLogging: { ignore: (req) => ['/healthz', '/readyz', '/metrics'].includes(req.url ?? '') },
            // Query strings can carry one-time tickets; log the path only.
            serializers: {
              req: (req: { method?: string; url?: string; id?: unknown }) => ({
                id: req.id,
                method: req.method,
                path: (req.url ?? '').split('?')[0],
              }),
            },
          },
        }),
      ],
      controllers: [options.routes === 'liveness' ? LivenessController : HealthController],
      providers: [Readiness, Metrics, OpsListener],
      exports: [Readiness, Metrics, OpsListener],
    };
  }
}
