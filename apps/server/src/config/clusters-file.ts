import { DNS_LABEL, DNS_LABEL_HINT, type ConfigProblem } from '@periscope/config';
import { parse } from 'yaml';

export const BACKENDS = ['eks', 'kubeconfig', 'in-cluster', 'agent'] as const;
export type Backend = (typeof BACKENDS)[number];

/** Per-cluster overrides of pod-exec settings. */
export interface ExecOverrides {
  enabled?: boolean;
  idleSeconds?: number;
  idleWarnSeconds?: number;
  heartbeatSeconds?: number;
  maxSessionsPerUser?: number;
  maxSessionsTotal?: number;
}

interface ClusterBase {
  name: string;
  environment?: string;
  tags: Record<string, string>;
  exec: ExecOverrides;
  /**
   * More namespaces of this cluster that only the admin tier may exec into or list pods of,
   * besides the shell namespace, the server's own (in-cluster) and the agent's (from its hello).
   */
  protectedNamespaces: string[];
}

export type ClusterEntry =
  | (ClusterBase & { backend: 'eks'; arn: string; region: string })
  | (ClusterBase & { backend: 'kubeconfig'; kubeconfigPath: string; kubeconfigContext?: string })
  | (ClusterBase & { backend: 'in-cluster' })
  | (ClusterBase & { backend: 'agent' });

const MAX_PROTECTED = 64;
const EKS_ARN = /^arn:aws[a-z-]*:eks:[a-z0-9-]+:\d{12}:cluster\/[A-Za-z0-9][A-Za-z0-9_-]*$/;
const EXEC_KEYS: Record<keyof ExecOverrides, [number, number] | 'boolean'> = {
  enabled: 'boolean',
  idleSeconds: [60, 86_400],
  idleWarnSeconds: [5, 3600],
  heartbeatSeconds: [5, 300],
  maxSessionsPerUser: [1, 1000],
  maxSessionsTotal: [1, 10_000],
};

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function show(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/**
 * Parses and validates the clusters file. Every problem is reported with its path inside the file
 * (for example `clusters[2].arn`), so one message tells the operator everything to fix.
 */
export function parseClustersFile(
  text: string,
  file: string,
): { clusters: ClusterEntry[]; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const at = (path: string): string => `${file}: ${path}`;
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    return {
      clusters: [],
      problems: [{ setting: file, allowed: `valid YAML (${(err as Error).message.split('\n')[0] ?? ''})` }],
    };
  }
  if (doc === null || doc === undefined) return { clusters: [], problems };
  if (!isRecord(doc) || !Array.isArray(doc['clusters'])) {
    return { clusters: [], problems: [{ setting: at('clusters'), allowed: 'a top-level "clusters:" list' }] };
  }
  const clusters: ClusterEntry[] = [];
  const seen = new Map<string, number>();
  doc['clusters'].forEach((raw: unknown, i: number) => {
    const p = `clusters[${i}]`;
    if (!isRecord(raw)) {
      problems.push({
        setting: at(p),
        value: show(raw),
        allowed: 'a mapping with at least name and backend',
      });
      return;
    }
    const before = problems.length;
    const name = raw['name'];
    if (typeof name !== 'string' || !DNS_LABEL.test(name)) {
      problems.push({
        setting: at(`${p}.name`),
        value: name === undefined ? undefined : show(name),
        allowed: DNS_LABEL_HINT,
      });
    } else if (seen.has(name)) {
      problems.push({
        setting: at(`${p}.name`),
        value: name,
        allowed: `a unique name (clusters[${seen.get(name) ?? 0}] already uses it)`,
      });
    } else seen.set(name, i);

    const backend = raw['backend'];
    if (typeof backend !== 'string' || !(BACKENDS as readonly string[]).includes(backend)) {
      problems.push({
        setting: at(`${p}.backend`),
        value: backend === undefined ? undefined : show(backend),
        allowed: `one of ${BACKENDS.join(', ')}`,
      });
    }
    const str = (key: string, required: boolean, pattern?: RegExp, hint?: string): string | undefined => {
      const v = raw[key];
      if (v === undefined || v === null || v === '') {
        if (required)
          problems.push({
            setting: at(`${p}.${key}`),
            allowed: `a value (required for backend ${show(backend)})`,
          });
        return undefined;
      }
      if (typeof v !== 'string' || (pattern !== undefined && !pattern.test(v))) {
        problems.push({ setting: at(`${p}.${key}`), value: show(v), allowed: hint ?? 'a string' });
        return undefined;
      }
      return v;
    };
    const environment = str('environment', false);
    const tags: Record<string, string> = {};
    if (raw['tags'] !== undefined) {
      if (!isRecord(raw['tags']) || Object.values(raw['tags']).some((v) => typeof v !== 'string')) {
        problems.push({
          setting: at(`${p}.tags`),
          value: show(raw['tags']),
          allowed: 'a mapping of string to string',
        });
      } else Object.assign(tags, raw['tags']);
    }
    const exec: ExecOverrides = {};
    if (raw['exec'] !== undefined) {
      if (!isRecord(raw['exec']))
        problems.push({ setting: at(`${p}.exec`), value: show(raw['exec']), allowed: 'a mapping' });
      else {
        for (const [k, v] of Object.entries(raw['exec'])) {
          const rule = EXEC_KEYS[k as keyof ExecOverrides] as [number, number] | 'boolean' | undefined;
          if (rule === undefined) {
            problems.push({
              setting: at(`${p}.exec.${k}`),
              allowed: `one of the keys ${Object.keys(EXEC_KEYS).join(', ')}`,
            });
          } else if (rule === 'boolean') {
            if (typeof v !== 'boolean')
              problems.push({ setting: at(`${p}.exec.${k}`), value: show(v), allowed: 'true or false' });
            else exec.enabled = v;
          } else if (typeof v !== 'number' || !Number.isInteger(v) || v < rule[0] || v > rule[1]) {
            problems.push({
              setting: at(`${p}.exec.${k}`),
              value: show(v),
              allowed: `a whole number from ${rule[0]} to ${rule[1]}`,
            });
          } else exec[k as Exclude<keyof ExecOverrides, 'enabled'>] = v;
        }
      }
    }
    const protectedNamespaces: string[] = [];
    const pn = raw['protectedNamespaces'];
    if (pn !== undefined) {
      if (
        !Array.isArray(pn) ||
        pn.length > MAX_PROTECTED ||
        pn.some((n) => typeof n !== 'string' || !DNS_LABEL.test(n))
      )
        problems.push({
          setting: at(`${p}.protectedNamespaces`),
          value: show(pn),
          allowed: `a list of at most ${MAX_PROTECTED} namespace names (${DNS_LABEL_HINT})`,
        });
      else protectedNamespaces.push(...new Set(pn as string[]));
    }
    const base = {
      name: name as string,
      ...(environment !== undefined ? { environment } : {}),
      tags,
      exec,
      protectedNamespaces,
    };
    let entry: ClusterEntry | undefined;
    switch (backend) {
      case 'eks': {
        const arn = str(
          'arn',
          true,
          EKS_ARN,
          'an EKS cluster ARN such as arn:aws:eks:eu-west-1:123456789012:cluster/prod',
        );
        const region = str('region', true, /^[a-z]{2}(-[a-z]+)+-\d$/, 'an AWS region such as eu-west-1');
        if (arn !== undefined && region !== undefined) entry = { ...base, backend, arn, region };
        break;
      }
      case 'kubeconfig': {
        const kubeconfigPath = str('kubeconfigPath', true);
        const kubeconfigContext = str('kubeconfigContext', false);
        if (kubeconfigPath !== undefined)
          entry = {
            ...base,
            backend,
            kubeconfigPath,
            ...(kubeconfigContext !== undefined ? { kubeconfigContext } : {}),
          };
        break;
      }
      case 'in-cluster':
      case 'agent':
        entry = { ...base, backend };
        break;
      default:
        break;
    }
    if (entry !== undefined && problems.length === before) clusters.push(entry);
  });
  return { clusters, problems };
}
