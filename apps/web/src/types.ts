/** Shapes of the API answers the UI reads (docs/api.md). */

export type Tier = 'read' | 'triage' | 'write' | 'maintain' | 'admin';

/** `GET /api/meta`: public facts about the deployment. */
export interface Meta {
  version: string;
  authMode: 'oidc' | 'dev';
  clusterShellEnabled: boolean;
  publicUrl: string;
  allowedOrigins: string[];
}

export interface AuthConfig {
  authMode: 'oidc' | 'dev';
  devUsers?: { subject: string; groups: string[] }[];
  providerName?: string;
}

export interface WhoAmI {
  subject: string;
  email: string | null;
  groups: string[];
  mode: 'oidc' | 'dev';
  authzMode: string;
  tier: Tier | null;
}

export interface ClusterConnection {
  state: 'direct' | 'connected' | 'disconnected' | 'never-connected' | 'unavailable';
  since: string | null;
  lastSeen: string | null;
  rttMs: number | null;
  /** why the agent is unavailable (its last connection was refused at the handshake) */
  reason?: string;
}

export interface Cluster {
  name: string;
  backend: string;
  environment: string | null;
  tags: Record<string, string>;
  execEnabled: boolean;
  clusterShellEnabled: boolean;
  clusterShellReason?: string;
  /** the mode your tier's shells run in on this cluster */
  clusterShellMode?: string;
  /** the cluster's effective shell settings (server-wide values under its clusters-file overrides) */
  clusterShell?: ClusterShellSettings;
  connection: ClusterConnection;
}

export interface ClusterShellSettings {
  tiers: Tier[];
  /** the mode of each tier that may open a shell */
  modeByTier: Partial<Record<Tier, string>>;
  image: string;
  idleSeconds: number;
  maxSessionsTotal: number;
}

export interface Pod {
  namespace: string;
  name: string;
  phase: string;
  containers: string[];
}

export interface SessionTicket {
  sessionId: string;
  ticket: string;
  expiresAt: string;
  socketPath: string;
}

/** `GET /api/sessions`: one live terminal session (yours; every one for admins). */
export interface LiveSession {
  sessionId: string;
  /** cluster_shell or pod_exec */
  kind: string;
  cluster: string;
  subject: string;
  tier: string | null;
  namespace?: string;
  pod?: string;
  container?: string;
  /** cluster shell: bash or kubectl */
  mode?: string;
  startedAt: string;
  state: 'starting' | 'attached' | 'detached' | 'ended';
  bytesIn: number;
  bytesOut: number;
  lastActivityAt: string;
  idleSeconds: number;
  /** several replicas: the server replica holding the session (absent otherwise) */
  replica?: string | null;
}

export interface AuditEvent {
  id: string | number;
  time: string;
  verb: string;
  actor: string;
  cluster: string | null;
  sessionId: string | null;
  /** ok or error */
  outcome: string;
  body: Record<string, unknown>;
}

export interface AuditPage {
  events: AuditEvent[];
  nextBefore: string | number | null;
}

export interface Agent {
  cluster: string;
  connected: boolean;
  /** the server replica holding the tunnel (null: none holds it; absent from older servers) */
  replica?: string | null;
  connectedSince: string | null;
  lastSeen: string | null;
  lastRttMs: number | null;
  openStreams: number;
  certificateNotAfter: string | null;
  version: string | null;
  clusterShell: { enabled: boolean; namespace: string; tiers: string[] } | null;
  /** the last connection refused at its handshake (e.g. a hello of the wrong shape) */
  handshakeProblem?: { at: string; reason: string } | null;
  /** an admin revoked this cluster's agent; it must register again */
  revoked: boolean;
  revokedAt?: string;
  revokedBy?: string;
  /** the one certificate that may connect (null: revoked or not registered yet) */
  certificate: { serial: string; notAfter: string; since: string; how: string } | null;
}
