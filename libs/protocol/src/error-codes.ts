/** Error codes shared by the HTTP API, terminal WebSocket frames and the tunnel. */
export const ERROR_CODE = {
  notFound: 'E_NOT_FOUND',
  auth: 'E_AUTH',
  forbidden: 'E_FORBIDDEN',
  clusterShellDisabled: 'E_CLUSTER_SHELL_DISABLED',
  clusterShellRequiresTier: 'E_CLUSTER_SHELL_REQUIRES_TIER',
  badRequest: 'E_BAD_REQUEST',
  capUser: 'E_CAP_USER',
  capCluster: 'E_CAP_CLUSTER',
  internal: 'E_INTERNAL',
} as const;
export type ErrorCode = (typeof ERROR_CODE)[keyof typeof ERROR_CODE];
