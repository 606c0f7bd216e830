import { ArgumentsHost, Catch, HttpException, Logger, type ExceptionFilter } from '@nestjs/common';
import { ERROR_CODE } from '@periscope/protocol';
import type { Response } from 'express';

import { DomainError, HTTP_STATUS } from './domain-error';

/** Maps every error of an HTTP request to `{"error": code, "message": …}` with the right status. */
@Catch()
export class HttpErrorFilter implements ExceptionFilter {
  private readonly log = new Logger('http');

  catch(err: unknown, host: ArgumentsHost): void {
    const res = host.switchToHttp().getResponse<Response>();
    if (err instanceof DomainError) {
      res.status(HTTP_STATUS[err.code]).json({ error: err.code, message: err.message, ...err.details });
      return;
    }
    if (err instanceof HttpException) {
      const status = err.getStatus();
      const code =
        status === 404
          ? ERROR_CODE.notFound
          : status === 401
            ? ERROR_CODE.auth
            : status === 403
              ? ERROR_CODE.forbidden
              : status < 500
                ? ERROR_CODE.badRequest
                : ERROR_CODE.internal;
      const body: unknown = err.getResponse();
      const message =
        typeof body === 'object' && body !== null && 'message' in body ? String(body.message) : err.message;
      res.status(status).json({ error: code, message });
      return;
    }
    this.log.error({ err: err instanceof Error ? err.stack : String(err) }, 'unhandled error');
    res.status(500).json({ error: ERROR_CODE.internal, message: 'internal error; see the server log' });
  }
}
