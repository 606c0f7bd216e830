import { ERROR_CODE, type ErrorCode } from '@periscope/protocol';

/** An error with a stable code; one filter per transport maps it to HTTP, WS or tunnel errors. */
export class DomainError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'DomainError';
  }
}

export const HTTP_STATUS: Record<ErrorCode, number> = {
  [ERROR_CODE.notFound]: 404,
  [ERROR_CODE.auth]: 401,
  [ERROR_CODE.forbidden]: 403,
  [ERROR_CODE.clusterShellDisabled]: 403,
  [ERROR_CODE.clusterShellRequiresTier]: 403,
  [ERROR_CODE.badRequest]: 400,
  [ERROR_CODE.execDisabled]: 403,
  [ERROR_CODE.protectedNamespace]: 403,
  [ERROR_CODE.upstream]: 502,
  [ERROR_CODE.capUser]: 429,
  [ERROR_CODE.capCluster]: 429,
  [ERROR_CODE.internal]: 500,
  [ERROR_CODE.unavailable]: 503,
  [ERROR_CODE.csrf]: 403,
  [ERROR_CODE.misdirected]: 421,
  [ERROR_CODE.unsupportedMediaType]: 415,
  [ERROR_CODE.recordingIntegrity]: 409,
};
