/** Error codes shared by the HTTP API, terminal WebSocket frames and the tunnel. */
export const ERROR_CODE = {
  notFound: 'E_NOT_FOUND',
  auth: 'E_AUTH',
  forbidden: 'E_FORBIDDEN',
  clusterShellDisabled: 'E_CLUSTER_SHELL_DISABLED',
  clusterShellRequiresTier: 'E_CLUSTER_SHELL_REQUIRES_TIER',
  badRequest: 'E_BAD_REQUEST',
  execDisabled: 'E_EXEC_DISABLED',
  /** the target is in one of Periscope's own namespaces, which only the admin tier may touch */
  protectedNamespace: 'E_PROTECTED_NAMESPACE',
  upstream: 'E_UPSTREAM',
  capUser: 'E_CAP_USER',
  capCluster: 'E_CAP_CLUSTER',
  internal: 'E_INTERNAL',
  /** the server is at a capacity bound (sessions, tickets); try again later */
  unavailable: 'E_UNAVAILABLE',
  /** a state-changing request from another site (Origin / Sec-Fetch-Site) */
  csrf: 'E_CSRF',
  /** the Host header names neither the public URL nor an allowed origin (DNS rebinding) */
  misdirected: 'E_MISDIRECTED',
  /** a state-changing request whose body is not application/json */
  unsupportedMediaType: 'E_UNSUPPORTED_MEDIA_TYPE',
  /** a session recording does not match the size and SHA-256 of its close record */
  recordingIntegrity: 'E_RECORDING_INTEGRITY',
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
  /** stdin kept arriving past a paused socket (the per-session bound of input taken while paused) */
  backpressure: 'E_BACKPRESSURE',
  /** a live watcher's keystrokes: watching is read-only, nothing reaches the session */
  readOnly: 'E_READ_ONLY',
  /** the operator's tier changed (at a token refresh, or on resume) so that the session may not go on */
  tierChanged: 'E_TIER_CHANGED',
  /** the sign-in that opened the session signed out (or its refresh was refused): its terminals end */
  signedOut: 'E_SIGNED_OUT',
  /**
   * a resume arrived while the session was being taken over by this replica (its own was lost):
   * retryable, the client resumes again in a moment
   */
  sessionMoving: 'E_SESSION_MOVING',
} as const;

export type ErrorCode = (typeof ERROR_CODE)[keyof typeof ERROR_CODE];
export type TerminalErrorCode = (typeof TERMINAL_ERROR)[keyof typeof TERMINAL_ERROR];

/**
 * Codes the browser gives its own failures; never on the wire. Listed here beside the wire codes
 * so that the web's help texts switch over one table.
 */
export const CLIENT_ERROR = {
  /** the first terminal socket closed before the session started */
  transport: 'E_TRANSPORT',
  /** the resume attempts ran out, or the operator stopped them */
  reconnectFailed: 'E_RECONNECT_FAILED',
  /** an HTTP request did not reach the server */
  network: 'E_NETWORK',
} as const;
export type ClientErrorCode = (typeof CLIENT_ERROR)[keyof typeof CLIENT_ERROR];
