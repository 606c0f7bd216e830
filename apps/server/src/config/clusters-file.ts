import { DNS_LABEL, DNS_LABEL_HINT, type ConfigProblem } from '@periscope/config';
import { parse } from 'yaml';

import {
  checkConfig,
  EmptyIsUnset,
  isBool,
  isRecord,
  isText,
  isWhole,
  Required,
  Rule,
  Section,
  SectionList,
  When,
} from './config-dto';
import { TIER_NAMES, type TierName } from './server-env';
import {
  PodTemplateDto,
  podTemplateOf,
  SHELL_MODES,
  type ShellMode,
  type ShellPodTemplate,
} from './shell-pod-template';

export const BACKENDS = ['eks', 'kubeconfig', 'in-cluster', 'agent'] as const;
export type Backend = (typeof BACKENDS)[number];

/** Session recording modes (PERISCOPE_SESSION_RECORDING; `recording` of exec and clusterShell here). */
export const RECORDING_MODES = ['off', 'output', 'output+input'] as const;
export type RecordingMode = (typeof RECORDING_MODES)[number];
const isRecordingMode = (v: unknown): boolean => (RECORDING_MODES as readonly unknown[]).includes(v);

/** Per-cluster overrides of pod-exec settings. */
export interface ExecOverrides {
  enabled?: boolean;
  /** this cluster's pod-exec sessions are recorded so (PERISCOPE_SESSION_RECORDING otherwise) */
  recording?: RecordingMode;
  idleSeconds?: number;
  idleWarnSeconds?: number;
  heartbeatSeconds?: number;
  maxSessionsPerUser?: number;
  maxSessionsTotal?: number;
}

/**
 * Per-cluster overrides of the cluster-shell settings; the server-wide values
 * (PERISCOPE_CLUSTER_SHELL_*) are the defaults.
 */
export interface ClusterShellOverrides {
  /** false turns the shell off for this cluster; true cannot turn it on when the server has it off */
  enabled?: boolean;
  /** this cluster's shell sessions are recorded so (PERISCOPE_SESSION_RECORDING otherwise) */
  recording?: RecordingMode;
  tiers?: TierName[];
  mode?: ShellMode;
  modeByTier?: Partial<Record<TierName, ShellMode>>;
  image?: string;
  idleSeconds?: number;
  maxSessionsTotal?: number;
  pod?: ShellPodTemplate;
}

interface ClusterBase {
  name: string;
  environment?: string;
  tags: Record<string, string>;
  exec: ExecOverrides;
  clusterShell: ClusterShellOverrides;
  /**
   * More namespaces of this cluster that only the admin tier may exec into or list pods of,
   * besides the shell namespace, the server's own (in-cluster) and the agent's (from its hello).
   */
  protectedNamespaces: string[];
}

export type ClusterEntry =
  | (ClusterBase & { backend: 'eks'; arn: string; region: string })
  | (ClusterBase & {
      backend: 'kubeconfig';
      kubeconfigPath: string;
      kubeconfigContext?: string;
      /** the apiserver URL written into session kubeconfigs, when the server's own is not reachable from pods */
      inClusterServer?: string;
    })
  | (ClusterBase & { backend: 'in-cluster' })
  | (ClusterBase & { backend: 'agent' });

const MAX_CLUSTERS = 1000;
const MAX_PROTECTED = 64;
const MAX_TAGS = 64;
const EKS_ARN = /^arn:aws[a-z-]*:eks:[a-z0-9-]+:\d{12}:cluster\/[A-Za-z0-9][A-Za-z0-9_-]*$/;
const AWS_REGION = /^[a-z]{2}(-[a-z]+)+-\d$/;
const WHOLE = (min: number, max: number): string => `a whole number from ${min} to ${max}`;

class ExecOverridesDto implements ExecOverrides {
  @Rule('true or false', isBool)
  enabled?: boolean;

  @Rule(WHOLE(60, 86_400), isWhole(60, 86_400))
  idleSeconds?: number;

  @Rule(WHOLE(5, 3600), isWhole(5, 3600))
  idleWarnSeconds?: number;

  @Rule(WHOLE(5, 300), isWhole(5, 300))
  heartbeatSeconds?: number;

  @Rule(WHOLE(1, 1000), isWhole(1, 1000))
  maxSessionsPerUser?: number;

  @Rule(WHOLE(1, 10_000), isWhole(1, 10_000))
  maxSessionsTotal?: number;

  @Rule(`one of ${RECORDING_MODES.join(', ')}`, isRecordingMode)
  recording?: RecordingMode;
}

const SHELL_MODE_HINT = `one of ${SHELL_MODES.join(', ')}`;
const isMode = (v: unknown): boolean => (SHELL_MODES as readonly unknown[]).includes(v);
const isTier = (v: unknown): boolean => (TIER_NAMES as readonly unknown[]).includes(v);

class ClusterShellOverridesDto {
  @Rule('true or false', isBool)
  enabled?: boolean;

  @Rule(
    `a non-empty list of tiers (${TIER_NAMES.join(', ')})`,
    (v) => Array.isArray(v) && v.length > 0 && v.every(isTier),
  )
  tiers?: TierName[];

  @Rule(SHELL_MODE_HINT, isMode)
  mode?: ShellMode;

  @Rule(
    `a mapping of tier (${TIER_NAMES.join(', ')}) to mode (${SHELL_MODES.join(', ')}), e.g. { read: kubectl }`,
    (v) => isRecord(v) && Object.entries(v).every(([k, m]) => isTier(k) && isMode(m)),
  )
  modeByTier?: Partial<Record<TierName, ShellMode>>;

  @Rule('an image reference without spaces', isText(512, /^\S+$/))
  image?: string;

  @Rule(WHOLE(60, 86_400), isWhole(60, 86_400))
  idleSeconds?: number;

  @Rule(WHOLE(1, 10_000), isWhole(1, 10_000))
  maxSessionsTotal?: number;

  @Section(() => PodTemplateDto)
  pod?: PodTemplateDto;

  @Rule(`one of ${RECORDING_MODES.join(', ')}`, isRecordingMode)
  recording?: RecordingMode;
}

const HTTPS_URL = /^https:\/\/[^\s/?#]+(\/[^\s?#]*)?$/;

const forBackend = (b: Backend): string => `a value (required for backend ${b})`;

class ClusterDto {
  @Rule(DNS_LABEL_HINT, isText(63, DNS_LABEL), { required: true })
  name!: string;

  @Rule(`one of ${BACKENDS.join(', ')}`, (v) => (BACKENDS as readonly unknown[]).includes(v), {
    required: true,
  })
  backend!: Backend;

  @EmptyIsUnset()
  @Rule('a string', isText(253))
  environment?: string;

  @Rule(`a mapping of string to string, at most ${MAX_TAGS} entries`, (v) => {
    if (!isRecord(v)) return false;
    const values = Object.values(v);
    return values.length <= MAX_TAGS && values.every(isText(1024));
  })
  tags?: Record<string, string>;

  @Section(() => ExecOverridesDto)
  exec?: ExecOverridesDto;

  @Section(() => ClusterShellOverridesDto)
  clusterShell?: ClusterShellOverridesDto;

  @EmptyIsUnset()
  @Rule(
    (v) =>
      typeof v === 'string' && HTTPS_URL.test(v)
        ? 'only with backend kubeconfig (other backends know their in-cluster apiserver URL)'
        : 'an https:// URL of the apiserver as pods in the cluster reach it, e.g. https://kubernetes.default.svc',
    (v, o) =>
      typeof v === 'string' &&
      v.length <= 2048 &&
      HTTPS_URL.test(v) &&
      (o as ClusterDto).backend === 'kubeconfig',
  )
  inClusterServer?: string;

  @Rule(
    `a list of at most ${MAX_PROTECTED} namespace names (${DNS_LABEL_HINT})`,
    (v) => Array.isArray(v) && v.length <= MAX_PROTECTED && v.every(isText(63, DNS_LABEL)),
  )
  protectedNamespaces?: string[];

  @When((o) => o['backend'] === 'eks')
  @EmptyIsUnset()
  @Required(forBackend('eks'))
  @Rule('an EKS cluster ARN such as arn:aws:eks:eu-west-1:123456789012:cluster/prod', isText(2048, EKS_ARN))
  arn?: string;

  @When((o) => o['backend'] === 'eks')
  @EmptyIsUnset()
  @Required(forBackend('eks'))
  @Rule('an AWS region such as eu-west-1', isText(64, AWS_REGION))
  region?: string;

  @When((o) => o['backend'] === 'kubeconfig')
  @EmptyIsUnset()
  @Required(forBackend('kubeconfig'))
  @Rule('a string', isText(4096))
  kubeconfigPath?: string;

  @EmptyIsUnset()
  @Rule('a string', isText(253))
  kubeconfigContext?: string;
}

class ClustersFileDto {
  @SectionList(() => ClusterDto, MAX_CLUSTERS, 'a top-level "clusters:" list', { required: true })
  clusters!: ClusterDto[];
}

function shellOverrides(o: ClusterShellOverridesDto | undefined): ClusterShellOverrides {
  if (!o) return {};
  const { pod, tiers, ...rest } = o;
  return {
    ...Object.fromEntries(Object.entries(rest as Record<string, unknown>).filter(([, v]) => v !== undefined)),
    ...(tiers !== undefined ? { tiers: [...new Set(tiers)] } : {}),
    ...(pod !== undefined ? { pod: podTemplateOf(pod) } : {}),
  };
}

/** The checked entry as the rest of the server sees it (only its backend's fields). */
function toEntry(c: ClusterDto): ClusterEntry {
  const base = {
    name: c.name,
    ...(c.environment !== undefined ? { environment: c.environment } : {}),
    tags: c.tags ?? {},
    exec: Object.fromEntries(Object.entries(c.exec ?? {}).filter(([, v]) => v !== undefined)),
    clusterShell: shellOverrides(c.clusterShell),
    protectedNamespaces: [...new Set(c.protectedNamespaces ?? [])],
  };
  switch (c.backend) {
    case 'eks':
      return { ...base, backend: c.backend, arn: c.arn ?? '', region: c.region ?? '' };
    case 'kubeconfig':
      return {
        ...base,
        backend: c.backend,
        kubeconfigPath: c.kubeconfigPath ?? '',
        ...(c.kubeconfigContext !== undefined ? { kubeconfigContext: c.kubeconfigContext } : {}),
        ...(c.inClusterServer !== undefined ? { inClusterServer: c.inClusterServer.replace(/\/$/, '') } : {}),
      };
    case 'in-cluster':
    case 'agent':
      return { ...base, backend: c.backend };
  }
}

/**
 * Parses and validates the clusters file. Every problem is reported with its path inside the file
 * (for example `clusters[2].arn`), so one message tells the operator everything to fix.
 */
export function parseClustersFile(
  text: string,
  file: string,
): { clusters: ClusterEntry[]; problems: ConfigProblem[] } {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    return {
      clusters: [],
      problems: [{ setting: file, allowed: `valid YAML (${(err as Error).message.split('\n')[0] ?? ''})` }],
    };
  }
  if (doc === null || doc === undefined) return { clusters: [], problems: [] };
  if (!isRecord(doc))
    return {
      clusters: [],
      problems: [{ setting: `${file}: clusters`, allowed: 'a top-level "clusters:" list' }],
    };
  const { value, problems } = checkConfig(ClustersFileDto, doc, file);
  // Names are unique across the file (a rule no single field can check).
  const seen = new Map<unknown, number>();
  const list: unknown[] = Array.isArray(doc['clusters']) ? doc['clusters'] : [];
  list.forEach((raw, i) => {
    const name = isRecord(raw) ? raw['name'] : undefined;
    if (typeof name !== 'string' || !DNS_LABEL.test(name)) return;
    const first = seen.get(name);
    if (first === undefined) seen.set(name, i);
    else
      problems.push({
        setting: `${file}: clusters[${i}].name`,
        value: name,
        allowed: `a unique name (clusters[${first}] already uses it)`,
      });
  });
  if (value === undefined || problems.length > 0) return { clusters: [], problems };
  return { clusters: value.clusters.map(toEntry), problems };
}
