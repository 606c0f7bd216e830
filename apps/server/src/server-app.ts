import 'reflect-metadata';

import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { Logger } from 'nestjs-pino';

import { AppModule } from './app.module';
import { HttpErrorFilter } from './common/http-error.filter';
import { InputValidationPipe } from './common/input-validation.pipe';
import { configForLog, type ServerConfig } from './config/server-config';
import { ReplicaRouter } from './replicas/replica-router.service';
import { TunnelIoAdapter } from './tunnel/tunnel-io.adapter';
import { browserGuard } from './web/request-guard';
import { defaultWebDir, serveSpa } from './web/spa';

/** Builds the server application (not listening yet); used by main and by tests. */
export async function createServerApp(config: ServerConfig): Promise<NestExpressApplication> {
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forRoot(config), {
    bufferLogs: true,
  });
  const logger = app.get(Logger);
  app.useLogger(logger);
  app.disable('x-powered-by');
  // Before every route and the SPA files: security headers, the Host check (DNS rebinding) and
  // the cross-site / JSON-only checks of state-changing requests.
  app.use(
    browserGuard(config.http, (err, req) => {
      logger.warn(
        {
          code: err.code,
          method: req.method,
          path: (req.url ?? '').split('?')[0],
          host: req.headers.host?.slice(0, 100),
          origin: req.headers.origin?.slice(0, 100),
        },
        'request refused',
      );
    }),
  );
  // Several replicas: what another replica owns (a cluster's agent tunnel, a live session) is
  // forwarded there before any body is read (apps/server/src/replicas).
  app.use(app.get(ReplicaRouter).middleware);
  // The one Socket.IO gateway (the agent tunnel) runs on the tunnel's own mTLS listener; the
  // browser terminals are raw `ws` routes on the HTTP server and are not affected.
  app.useWebSocketAdapter(TunnelIoAdapter.of(app));
  app.setGlobalPrefix('api', { exclude: ['healthz'] });
  app.useGlobalFilters(new HttpErrorFilter());
  // Every controller body and query is a DTO class, checked here (400 E_BAD_REQUEST naming the field).
  app.useGlobalPipes(new InputValidationPipe());
  app.enableShutdownHooks();
  logger.log({ config: configForLog(config) }, 'effective configuration');
  const webDir = config.webDir ?? defaultWebDir();
  if (!serveSpa(app, webDir))
    logger.warn({ webDir }, 'web UI not built; serving the API only (run npm run build)');
  return app;
}
