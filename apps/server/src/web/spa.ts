import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

import type { INestApplication } from '@nestjs/common';
import express from 'express';

/** Where the built SPA lives when no directory is configured: the web app's build output. */
export function defaultWebDir(): string {
  return resolve(__dirname, '../../../web/dist');
}

/**
 * Serves the built SPA at "/" with an index.html fallback for client-side routes. API, health and
 * metrics paths never fall through to the SPA, so a wrong API path is a 404, not a web page.
 */
export function serveSpa(app: INestApplication, webDir: string): boolean {
  const index = join(webDir, 'index.html');
  if (!existsSync(index)) return false;
  const http = app.getHttpAdapter().getInstance() as express.Express;
  http.use(express.static(webDir, { index: false, maxAge: '1h', setHeaders: noCacheForIndex }));
  http.get(/^(?!\/api\/|\/api$|\/healthz$|\/readyz$|\/metrics$).*/, (req, res, next) => {
    if (!req.accepts('html')) {
      next();
      return;
    }
    res.setHeader('Cache-Control', 'no-cache');
    res.sendFile(index);
  });
  return true;
}

function noCacheForIndex(res: express.Response, path: string): void {
  if (path.endsWith('index.html')) res.setHeader('Cache-Control', 'no-cache');
}
