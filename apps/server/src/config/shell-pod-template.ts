/**
 * The cluster-shell session pod template operators control (resources, scheduling, extra
 * metadata, pull secrets), server-wide from PERISCOPE_CLUSTER_SHELL_POD_* and per cluster from
 * `clusters[i].clusterShell.pod`, both checked by the one DTO below. Periscope's own labels and
 * annotations, and anything that would weaken the pod's Pod Security `restricted` shape, are
 * refused at load.
 */
import type { ConfigProblem } from '@periscope/config';

import { checkConfig, isRecord, isText, isWhole, Rule, Section, SectionList } from './config-dto';

export const SHELL_MODES = ['bash', 'kubectl'] as const;
export type ShellMode = (typeof SHELL_MODES)[number];

export const TOLERATION_OPERATORS = ['Exists', 'Equal'] as const;
export const TAINT_EFFECTS = ['NoSchedule', 'PreferNoSchedule', 'NoExecute'] as const;

export interface ShellToleration {
  key?: string;
  operator?: (typeof TOLERATION_OPERATORS)[number];
  value?: string;
  effect?: (typeof TAINT_EFFECTS)[number];
  tolerationSeconds?: number;
}

export interface ShellPodResources {
  requests?: Record<string, string>;
  limits?: Record<string, string>;
}

/** What an operator may set on the session pod; every field optional. */
export interface ShellPodTemplate {
  resources?: ShellPodResources;
  nodeSelector?: Record<string, string>;
  tolerations?: ShellToleration[];
  priorityClassName?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** names of Secrets (type kubernetes.io/dockerconfigjson) in the shell namespace */
  imagePullSecrets?: string[];
}

const MAX_ENTRIES = 32;
const MAX_TOLERATIONS = 32;
const MAX_PULL_SECRETS = 16;
const RESOURCE_NAMES = ['cpu', 'memory', 'ephemeral-storage'] as const;

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const NAME_PART = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;
const QUANTITY = /^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/;
const MULTIPLIER: Record<string, number> = {
  '': 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** Keys Periscope sets itself on the session objects (labels) or reserves (annotations). */
const PERISCOPE_KEY = /^([a-z0-9-]+\.)*periscope\.io\//;
const PERISCOPE_NAME_LABEL = 'app.kubernetes.io/name';
/** Annotations that change the pod's security profile (Pod Security would refuse or weaken it). */
const SECURITY_ANNOTATION =
  /^(container\.apparmor\.security\.beta\.kubernetes\.io|seccomp\.security\.alpha\.kubernetes\.io|container\.seccomp\.security\.alpha\.kubernetes\.io)\//;

/** A Kubernetes qualified name: an optional DNS-subdomain prefix and `/`, then a name. */
export function isQualifiedName(k: string): boolean {
  const slash = k.indexOf('/');
  if (slash < 0) return NAME_PART.test(k);
  const prefix = k.slice(0, slash);
  return prefix.length <= 253 && DNS_SUBDOMAIN.test(prefix) && NAME_PART.test(k.slice(slash + 1));
}

/** The quantity as a number of base units, or undefined when it is not one we accept. */
export function quantityValue(q: unknown): number | undefined {
  if (typeof q === 'number') return Number.isFinite(q) && q >= 0 ? q : undefined; // YAML `cpu: 1`
  if (typeof q !== 'string') return undefined;
  const m = QUANTITY.exec(q);
  if (!m) return undefined;
  return Number(m[1]) * (MULTIPLIER[m[2] ?? ''] ?? 1);
}

const reservedLabel = (k: string): boolean => PERISCOPE_KEY.test(k) || k === PERISCOPE_NAME_LABEL;
const reservedAnnotation = (k: string): boolean => PERISCOPE_KEY.test(k) || SECURITY_ANNOTATION.test(k);

const mapOf =
  (key: (k: string) => boolean, value: (v: unknown) => boolean) =>
  (v: unknown): boolean =>
    isRecord(v) &&
    Object.keys(v).length <= MAX_ENTRIES &&
    Object.entries(v).every(([k, x]) => key(k) && value(x));

const isLabelMap = mapOf(isQualifiedName, (x) => typeof x === 'string' && LABEL_VALUE.test(x));
const LABEL_MAP_HINT = `a mapping of label keys (optional DNS prefix and "/", then 1-63 letters, digits, "-", "_", ".") to label values (at most 63 such characters), at most ${MAX_ENTRIES} entries`;

/** A message naming the first reserved key, else the general shape. */
const reservedOr =
  (reserved: (k: string) => boolean, why: string, shape: string) =>
  (v: unknown): string => {
    const k = isRecord(v) ? Object.keys(v).find(reserved) : undefined;
    return k !== undefined ? `keys other than ${JSON.stringify(k)}: ${why}` : shape;
  };

const resourceMapOk = (v: unknown): boolean =>
  isRecord(v) &&
  Object.entries(v).every(
    ([k, x]) => (RESOURCE_NAMES as readonly string[]).includes(k) && quantityValue(x) !== undefined,
  );
const RESOURCE_HINT = `a mapping of ${RESOURCE_NAMES.join(', ')} to quantities such as 250m, 1, 512Mi or 1Gi`;

class ResourcesDto implements ShellPodResources {
  @Rule(RESOURCE_HINT, resourceMapOk)
  requests?: Record<string, string>;

  @Rule(
    (v) =>
      resourceMapOk(v) ? 'limits at least as large as the requests of the same resource' : RESOURCE_HINT,
    (v, o) => {
      if (!resourceMapOk(v)) return false;
      const requests = (o as ResourcesDto).requests;
      if (!resourceMapOk(requests)) return true; // reported on requests
      return Object.entries(v as Record<string, string>).every(([k, lim]) => {
        const req = (requests as Record<string, string>)[k];
        return req === undefined || (quantityValue(req) ?? 0) <= (quantityValue(lim) ?? 0);
      });
    },
  )
  limits?: Record<string, string>;
}

class TolerationDto implements ShellToleration {
  @Rule(
    'a label key (optional DNS prefix and "/", then a name); leave it out with operator Exists to match every taint',
    (v) => typeof v === 'string' && isQualifiedName(v),
  )
  key?: string;

  @Rule(`one of ${TOLERATION_OPERATORS.join(', ')}`, (v) =>
    (TOLERATION_OPERATORS as readonly unknown[]).includes(v),
  )
  operator?: ShellToleration['operator'];

  @Rule(
    'a label value (at most 63 letters, digits, "-", "_", "."), and no value with operator Exists',
    (v, o) => typeof v === 'string' && LABEL_VALUE.test(v) && (o as TolerationDto).operator !== 'Exists',
  )
  value?: string;

  @Rule(`one of ${TAINT_EFFECTS.join(', ')} (leave it out to match every effect)`, (v) =>
    (TAINT_EFFECTS as readonly unknown[]).includes(v),
  )
  effect?: ShellToleration['effect'];

  @Rule(
    'a whole number of seconds from 0 to 31536000, only with effect NoExecute',
    (v, o) => isWhole(0, 31_536_000)(v) && (o as TolerationDto).effect === 'NoExecute',
  )
  tolerationSeconds?: number;
}

export class PodTemplateDto implements ShellPodTemplate {
  @Section(() => ResourcesDto, 'a mapping with requests and/or limits')
  resources?: ResourcesDto;

  @Rule(LABEL_MAP_HINT, isLabelMap)
  nodeSelector?: Record<string, string>;

  @SectionList(() => TolerationDto, MAX_TOLERATIONS, `a list of at most ${MAX_TOLERATIONS} tolerations`)
  @Rule(
    'tolerations that name a key, or have operator: Exists (an empty key matches every taint only then)',
    (v) =>
      (v as unknown[]).every((t) => !isRecord(t) || t['key'] !== undefined || t['operator'] === 'Exists'),
  )
  tolerations?: TolerationDto[];

  @Rule(
    'a PriorityClass name (a DNS subdomain: lowercase letters, digits, "-" and ".")',
    isText(253, DNS_SUBDOMAIN),
  )
  priorityClassName?: string;

  @Rule(
    reservedOr(
      reservedLabel,
      `labels under periscope.io/ and ${PERISCOPE_NAME_LABEL} are Periscope's own (they mark and select the session objects)`,
      LABEL_MAP_HINT,
    ),
    (v) => isLabelMap(v) && !Object.keys(v as object).some(reservedLabel),
  )
  labels?: Record<string, string>;

  @Rule(
    reservedOr(
      reservedAnnotation,
      'annotations under periscope.io/ are Periscope\'s own, and AppArmor or seccomp annotations would take the pod out of Pod Security "restricted"',
      `a mapping of annotation keys (optional DNS prefix and "/", then a name) to strings of at most 4096 characters, at most ${MAX_ENTRIES} entries`,
    ),
    (v) => mapOf(isQualifiedName, isText(4096))(v) && !Object.keys(v as object).some(reservedAnnotation),
  )
  annotations?: Record<string, string>;

  @Rule(
    `a list of at most ${MAX_PULL_SECRETS} Secret names (DNS subdomains) in the shell namespace`,
    (v) => Array.isArray(v) && v.length <= MAX_PULL_SECRETS && v.every(isText(253, DNS_SUBDOMAIN)),
  )
  imagePullSecrets?: string[];
}

/** Quantities as Kubernetes takes them: text (YAML may have read `cpu: 1` as a number). */
const asText = (m: Record<string, unknown> | undefined): Record<string, string> | undefined =>
  m && Object.fromEntries(Object.entries(m).map(([k, v]) => [k, String(v)]));

/** The template as plain data, without the fields the file left out. */
function clean(t: PodTemplateDto): ShellPodTemplate {
  const out: ShellPodTemplate = {};
  if (t.resources) {
    const requests = asText(t.resources.requests);
    const limits = asText(t.resources.limits);
    out.resources = { ...(requests ? { requests } : {}), ...(limits ? { limits } : {}) };
  }
  if (t.nodeSelector) out.nodeSelector = { ...t.nodeSelector };
  if (t.tolerations)
    out.tolerations = t.tolerations.map((x) => ({
      ...(x.key !== undefined ? { key: x.key } : {}),
      ...(x.operator !== undefined ? { operator: x.operator } : {}),
      ...(x.value !== undefined ? { value: x.value } : {}),
      ...(x.effect !== undefined ? { effect: x.effect } : {}),
      ...(x.tolerationSeconds !== undefined ? { tolerationSeconds: x.tolerationSeconds } : {}),
    }));
  if (t.priorityClassName !== undefined) out.priorityClassName = t.priorityClassName;
  if (t.labels) out.labels = { ...t.labels };
  if (t.annotations) out.annotations = { ...t.annotations };
  if (t.imagePullSecrets) out.imagePullSecrets = [...new Set(t.imagePullSecrets)];
  return out;
}

/** A checked pod template section of a file (already parsed), as plain data. */
export function podTemplateOf(dto: PodTemplateDto | undefined): ShellPodTemplate {
  return dto ? clean(dto) : {};
}

/** The server-wide pod template variables (JSON where structured). */
export const POD_TEMPLATE_ENV = {
  resources: 'PERISCOPE_CLUSTER_SHELL_POD_RESOURCES',
  nodeSelector: 'PERISCOPE_CLUSTER_SHELL_POD_NODE_SELECTOR',
  tolerations: 'PERISCOPE_CLUSTER_SHELL_POD_TOLERATIONS',
  priorityClassName: 'PERISCOPE_CLUSTER_SHELL_POD_PRIORITY_CLASS_NAME',
  labels: 'PERISCOPE_CLUSTER_SHELL_POD_LABELS',
  annotations: 'PERISCOPE_CLUSTER_SHELL_POD_ANNOTATIONS',
  imagePullSecrets: 'PERISCOPE_CLUSTER_SHELL_POD_IMAGE_PULL_SECRETS',
} as const satisfies Record<keyof ShellPodTemplate, string>;

const JSON_FIELDS = new Set<keyof ShellPodTemplate>([
  'resources',
  'nodeSelector',
  'tolerations',
  'labels',
  'annotations',
]);

/**
 * The server-wide template from its variables (`raw`: the values after the env spec's own checks;
 * JSON text for the structured ones). Problems name the variable and, inside it, the field.
 */
export function parsePodTemplateEnv(raw: {
  [K in keyof ShellPodTemplate]?: K extends 'imagePullSecrets' ? string[] : string | undefined;
}): { template: ShellPodTemplate; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const doc: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(raw) as [keyof ShellPodTemplate, unknown][]) {
    if (value === undefined || value === '') continue;
    if (Array.isArray(value) && value.length === 0) continue;
    if (!JSON_FIELDS.has(field)) {
      doc[field] = value;
      continue;
    }
    try {
      doc[field] = JSON.parse(value as string) as unknown;
    } catch (err) {
      problems.push({
        setting: POD_TEMPLATE_ENV[field],
        value: value as string,
        allowed: `JSON (${(err as Error).message})`,
      });
    }
  }
  const checked = checkConfig(PodTemplateDto, doc, '');
  for (const p of checked.problems) {
    // checkConfig says ": <field>.<path>"; name the variable instead.
    const path = p.setting.replace(/^: /, '');
    const field = /^[A-Za-z]+/.exec(path)?.[0] as keyof ShellPodTemplate | undefined;
    const variable = field !== undefined && field in POD_TEMPLATE_ENV ? POD_TEMPLATE_ENV[field] : path;
    const inner = field !== undefined ? path.slice(field.length).replace(/^\./, '') : '';
    problems.push({ ...p, setting: inner === '' ? variable : `${variable} (${inner})` });
  }
  if (problems.length > 0) return { template: {}, problems };
  return { template: podTemplateOf(checked.value), problems };
}

/**
 * A cluster's template over the server-wide one: each field the cluster sets replaces the
 * server's, except labels and annotations, which are merged key by key (the cluster's win).
 */
export function mergePodTemplate(base: ShellPodTemplate, over: ShellPodTemplate): ShellPodTemplate {
  const labels = { ...base.labels, ...over.labels };
  const annotations = { ...base.annotations, ...over.annotations };
  return {
    ...base,
    ...over,
    ...(Object.keys(labels).length > 0 ? { labels } : {}),
    ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
  };
}
