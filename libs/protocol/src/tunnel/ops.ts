/**
 * Cluster operations the server asks an agent to run (control plane). Each payload is checked
 * field by field on arrival; a bad payload is answered with E_RPC_BAD_REQUEST, never executed.
 */
import { RPC_ERROR, RpcError } from './rpc';

export const CLUSTER_OP = {
  ca: 'cluster.ca',
  provision: 'shell.provision',
  teardown: 'shell.teardown',
  reap: 'shell.reap',
  readFile: 'pod.readFile',
  listPods: 'pods.list',
} as const;
export type ClusterOp = (typeof CLUSTER_OP)[keyof typeof CLUSTER_OP];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const TIER = /^(read|triage|write|maintain|admin)$/;

function bad(message: string): never {
  throw new RpcError({ code: RPC_ERROR.badRequest, message });
}
function obj(v: unknown): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) bad('payload must be an object');
  return v as Record<string, unknown>;
}
function str(o: Record<string, unknown>, k: string, re?: RegExp, max = 4096): string {
  const v = o[k];
  if (typeof v !== 'string' || v.length === 0 || v.length > max || (re !== undefined && !re.test(v)))
    bad(`${k} is missing or malformed`);
  return v;
}
function int(o: Record<string, unknown>, k: string, min: number, max: number): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    bad(`${k} must be a whole number from ${min} to ${max}`);
  return v;
}
function strMap(o: Record<string, unknown>, k: string): Record<string, string> | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  const m = obj(v);
  if (Object.keys(m).length > 64 || Object.values(m).some((x) => typeof x !== 'string'))
    bad(`${k} must map strings to strings`);
  return m as Record<string, string>;
}

export interface ShellProvisionRequest {
  sessionId: string;
  namespace: string;
  tier: string;
  subject: string;
  image: string;
  imagePullPolicy: 'Always' | 'IfNotPresent' | 'Never';
  mode: string;
  tokenSeconds: number;
  podStartTimeoutMs: number;
  nodeSelector?: Record<string, string>;
  extraLabels?: Record<string, string>;
  priorityClassName?: string;
}

export function parseShellProvision(v: unknown): ShellProvisionRequest {
  const o = obj(v);
  const pull = o['imagePullPolicy'];
  if (pull !== 'Always' && pull !== 'IfNotPresent' && pull !== 'Never')
    bad('imagePullPolicy must be Always, IfNotPresent or Never');
  const nodeSelector = strMap(o, 'nodeSelector');
  const extraLabels = strMap(o, 'extraLabels');
  const pc = o['priorityClassName'];
  if (pc !== undefined && (typeof pc !== 'string' || !DNS_SUBDOMAIN.test(pc)))
    bad('priorityClassName is malformed');
  return {
    sessionId: str(o, 'sessionId', UUID),
    namespace: str(o, 'namespace', DNS_LABEL),
    tier: str(o, 'tier', TIER),
    subject: str(o, 'subject', undefined, 512),
    image: str(o, 'image', /^\S+$/, 512),
    imagePullPolicy: pull,
    mode: str(o, 'mode', /^bash$/),
    tokenSeconds: int(o, 'tokenSeconds', 600, 7 * 86_400),
    podStartTimeoutMs: int(o, 'podStartTimeoutMs', 1000, 600_000),
    ...(nodeSelector ? { nodeSelector } : {}),
    ...(extraLabels ? { extraLabels } : {}),
    ...(typeof pc === 'string' ? { priorityClassName: pc } : {}),
  };
}

export interface ShellTeardownRequest {
  sessionId: string;
  namespace: string;
}

export function parseShellTeardown(v: unknown): ShellTeardownRequest {
  const o = obj(v);
  return { sessionId: str(o, 'sessionId', UUID), namespace: str(o, 'namespace', DNS_LABEL) };
}

export interface ShellReapRequest {
  namespace: string;
  liveSessionIds: string[];
  graceMs: number;
}

export function parseShellReap(v: unknown): ShellReapRequest {
  const o = obj(v);
  const live = o['liveSessionIds'];
  if (
    !Array.isArray(live) ||
    live.length > 100_000 ||
    live.some((x) => typeof x !== 'string' || !UUID.test(x))
  )
    bad('liveSessionIds must be a list of session ids');
  return {
    namespace: str(o, 'namespace', DNS_LABEL),
    liveSessionIds: live as string[],
    graceMs: int(o, 'graceMs', 0, 86_400_000),
  };
}

export interface PodReadFileRequest {
  namespace: string;
  pod: string;
  container: string;
  path: string;
  maxBytes: number;
  /** deadline of the in-pod read, exec included (default 10 s) */
  timeoutMs?: number;
}

export function parsePodReadFile(v: unknown): PodReadFileRequest {
  const o = obj(v);
  return {
    namespace: str(o, 'namespace', DNS_LABEL),
    pod: str(o, 'pod', DNS_SUBDOMAIN, 253),
    container: str(o, 'container', DNS_LABEL),
    path: str(o, 'path', /^\/[^\0]*$/, 1024),
    maxBytes: int(o, 'maxBytes', 1, 8 * 1024 * 1024),
    ...(o['timeoutMs'] !== undefined ? { timeoutMs: int(o, 'timeoutMs', 100, 60_000) } : {}),
  };
}

export interface ImpersonationSpec {
  user: string;
  groups: string[];
  extra?: Record<string, string[]>;
}

export interface PodListRequest {
  /** all namespaces the identity may list when absent */
  namespace?: string;
  /** one pod by name (needs namespace) */
  name?: string;
  impersonate?: ImpersonationSpec;
  limit: number;
  /**
   * Namespaces whose pods are left out (Periscope's own, for operators below admin); filtered by
   * the apiserver, so they do not count against `limit`. Agents that predate it ignore it, so the
   * server filters the answer again.
   */
  excludeNamespaces?: string[];
}

export interface PodSummary {
  namespace: string;
  name: string;
  phase: string;
  containers: string[];
  /** kubectl.kubernetes.io/default-container, when set */
  defaultContainer?: string;
}

function impersonation(v: unknown): ImpersonationSpec {
  const o = obj(v);
  const groups = o['groups'];
  if (
    !Array.isArray(groups) ||
    groups.length > 256 ||
    groups.some((g) => typeof g !== 'string' || g.length > 512)
  )
    bad('impersonate.groups must be a list of strings');
  const extra = o['extra'];
  if (extra !== undefined) {
    const e = obj(extra);
    if (
      Object.keys(e).length > 16 ||
      Object.values(e).some((vals) => !Array.isArray(vals) || vals.some((x) => typeof x !== 'string'))
    )
      bad('impersonate.extra must map strings to lists of strings');
  }
  return {
    user: str(o, 'user', undefined, 512),
    groups: groups as string[],
    ...(extra !== undefined ? { extra: extra as Record<string, string[]> } : {}),
  };
}

export function parsePodList(v: unknown): PodListRequest {
  const o = obj(v);
  return {
    ...(o['namespace'] !== undefined ? { namespace: str(o, 'namespace', DNS_LABEL) } : {}),
    ...(o['name'] !== undefined && o['namespace'] !== undefined
      ? { name: str(o, 'name', DNS_SUBDOMAIN, 253) }
      : {}),
    ...(o['impersonate'] !== undefined ? { impersonate: impersonation(o['impersonate']) } : {}),
    limit: int(o, 'limit', 1, 5000),
    ...(o['excludeNamespaces'] !== undefined
      ? { excludeNamespaces: namespaces(o, 'excludeNamespaces') }
      : {}),
  };
}

/** A list of at most 64 namespace names. */
function namespaces(o: Record<string, unknown>, k: string): string[] {
  const v = o[k];
  if (!Array.isArray(v) || v.length > 64 || v.some((n) => typeof n !== 'string' || !DNS_LABEL.test(n)))
    bad(`${k} must be a list of at most 64 namespace names`);
  return v as string[];
}
