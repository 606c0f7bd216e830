/** Error codes shared by the HTTP API, terminal WebSocket frames and the tunnel. */
export const ERROR_CODE = {
  notFound: 'E_NOT_FOUND',
  auth: 'E_AUTH',
  forbidden: 'E_FORBIDDEN',
  clusterShellDisabled: 'E_CLUSTER_SHELL_DISABLED',
  clusterShellRequiresTier: 'E_CLUSTER_SHELL_REQUIRES_TIER',
  badRequest: 'E_BAD_REQUEST',
  execDisabled: 'E_EXEC_DISABLED',
  upstream: 'E_UPSTREAM',
  capUser: 'E_CAP_USER',
  capCluster: 'E_CAP_CLUSTER',
  internal: 'E_INTERNAL',
} as const;
/** Codes sent only in terminal `error` frames (after the upgrade). */
export const TERMINAL_ERROR = {
  noShell: 'E_NO_SHELL',
  forbidden: 'E_FORBIDDEN',
  provision: 'E_PROVISION',
  stream: 'E_STREAM',
  badFrame: 'E_BAD_FRAME',
  rateLimit: 'E_RATE_LIMIT',
  sessionGone: 'E_SESSION_GONE',
  execFailed: 'E_EXEC_FAILED',
} as const;

export type ErrorCode = (typeof ERROR_CODE)[keyof typeof ERROR_CODE];
