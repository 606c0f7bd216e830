/**
 * Environment variables described as data: each entry knows its type, default, allowed range,
 * whether it is secret, and a one-line description. The same definitions drive parsing, the
 * logged effective configuration (secrets masked) and the configuration table in the docs.
 */

export type EnvVarSpec =
  | { kind: 'boolean'; default: boolean; description: string }
  | { kind: 'int'; default: number; min: number; max: number; description: string }
  | {
      kind: 'string';
      default: string | undefined;
      description: string;
      sensitive?: boolean;
      pattern?: RegExp;
      patternHint?: string;
    }
  | { kind: 'enum'; default: string; values: readonly string[]; description: string }
  | {
      kind: 'list';
      default: readonly string[];
      values?: readonly string[];
      pattern?: RegExp;
      patternHint?: string;
      description: string;
      nonEmpty?: boolean;
      maxItems?: number;
    };

export type EnvSpec = Readonly<Record<string, EnvVarSpec>>;

type ValueOf<S extends EnvVarSpec> = S extends { kind: 'boolean' }
  ? boolean
  : S extends { kind: 'int' }
    ? number
    : S extends { kind: 'list' }
      ? string[]
      : S extends { kind: 'string'; default: string }
        ? string
        : S extends { kind: 'string' }
          ? string | undefined
          : string;

export type EnvValues<T extends EnvSpec> = { -readonly [K in keyof T]: ValueOf<T[K]> };

/** One thing wrong with the configuration: which setting, the value given, and what is allowed. */
export interface ConfigProblem {
  readonly setting: string;
  readonly value?: string | undefined;
  readonly allowed: string;
}

export const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
export const DNS_LABEL_HINT =
  'a DNS label: 1-63 lowercase letters, digits or "-", starting and ending with a letter or digit';

const TRUE = new Set(['true', '1', 'yes', 'on']);
const FALSE = new Set(['false', '0', 'no', 'off']);

function splitList(raw: string): string[] {
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/**
 * Parses every variable of `spec` from `env`, collecting all problems instead of stopping at the
 * first, so one start-up message can list everything an operator must fix.
 */
export function parseEnv<T extends EnvSpec>(
  spec: T,
  env: Readonly<Record<string, string | undefined>>,
): { values: EnvValues<T>; problems: ConfigProblem[] } {
  const values: Record<string, unknown> = {};
  const problems: ConfigProblem[] = [];
  for (const [name, def] of Object.entries(spec)) {
    const raw = env[name];
    const given = raw !== undefined && raw.trim() !== '' ? raw.trim() : undefined;
    switch (def.kind) {
      case 'boolean': {
        if (given === undefined) values[name] = def.default;
        else if (TRUE.has(given.toLowerCase())) values[name] = true;
        else if (FALSE.has(given.toLowerCase())) values[name] = false;
        else {
          values[name] = def.default;
          problems.push({ setting: name, value: given, allowed: 'true or false' });
        }
        break;
      }
      case 'int': {
        if (given === undefined) {
          values[name] = def.default;
          break;
        }
        const n = /^-?\d+$/.test(given) ? Number(given) : Number.NaN;
        if (!Number.isSafeInteger(n) || n < def.min || n > def.max) {
          values[name] = def.default;
          problems.push({
            setting: name,
            value: given,
            allowed: `a whole number from ${def.min} to ${def.max}`,
          });
        } else values[name] = n;
        break;
      }
      case 'string': {
        values[name] = given ?? def.default;
        if (given !== undefined && def.pattern && !def.pattern.test(given)) {
          problems.push({
            setting: name,
            value: def.sensitive ? '<redacted>' : given,
            allowed: def.patternHint ?? String(def.pattern),
          });
        }
        break;
      }
      case 'enum': {
        if (given === undefined) values[name] = def.default;
        else if (def.values.includes(given)) values[name] = given;
        else {
          values[name] = def.default;
          problems.push({ setting: name, value: given, allowed: `one of ${def.values.join(', ')}` });
        }
        break;
      }
      case 'list': {
        const items = given === undefined ? [...def.default] : splitList(given);
        values[name] = items;
        const bad = items.filter(
          (i) =>
            (def.values !== undefined && !def.values.includes(i)) ||
            (def.pattern !== undefined && !def.pattern.test(i)),
        );
        if (bad.length > 0) {
          const allowed = def.values
            ? `a comma-separated list of ${def.values.join(', ')}`
            : `a comma-separated list of ${def.patternHint ?? 'values'}`;
          problems.push({ setting: name, value: given, allowed: `${allowed} (not ${bad.join(', ')})` });
        } else if (def.nonEmpty === true && items.length === 0) {
          problems.push({ setting: name, value: given ?? '', allowed: 'at least one entry' });
        } else if (def.maxItems !== undefined && items.length > def.maxItems) {
          problems.push({ setting: name, value: given, allowed: `at most ${def.maxItems} entries` });
        }
        break;
      }
    }
  }
  return { values: values as EnvValues<T>, problems };
}

/** The default of a variable as a human reads it in docs. */
export function describeDefault(def: EnvVarSpec): string {
  switch (def.kind) {
    case 'boolean':
    case 'int':
      return String(def.default);
    case 'string':
      return def.default ?? '(unset)';
    case 'enum':
      return def.default;
    case 'list':
      return def.default.length === 0 ? '(empty)' : def.default.join(',');
  }
}

/** A Markdown table of the variables, kept in the README by a test. */
export function renderEnvTable(spec: EnvSpec): string {
  const rows = Object.entries(spec).map(([name, def]) => {
    const allowed =
      def.kind === 'int'
        ? `${def.min}–${def.max}`
        : def.kind === 'enum'
          ? def.values.join(' \\| ')
          : def.kind === 'boolean'
            ? 'true \\| false'
            : def.kind === 'list'
              ? def.values
                ? `list of ${def.values.join(' \\| ')}`
                : 'comma-separated list'
              : def.sensitive
                ? 'secret'
                : 'text';
    return `| \`${name}\` | \`${describeDefault(def)}\` | ${allowed} | ${def.description} |`;
  });
  return ['| Variable | Default | Allowed | Meaning |', '|---|---|---|---|', ...rows].join('\n');
}

/**
 * Replaces the generated table between `<!-- env-table:<name>:start -->` and `…:end -->` in a
 * Markdown document. Returns undefined when the document has no such markers.
 */
export function replaceEnvTable(markdown: string, name: string, spec: EnvSpec): string | undefined {
  const start = `<!-- env-table:${name}:start -->`;
  const end = `<!-- env-table:${name}:end -->`;
  const a = markdown.indexOf(start);
  const b = markdown.indexOf(end);
  if (a < 0 || b < a) return undefined;
  return `${markdown.slice(0, a + start.length)}\n${renderEnvTable(spec)}\n${markdown.slice(b)}`;
}

/** Settings of the Node runtime that the server and the agent share. */
export const RUNTIME_ENV = {
  PERISCOPE_HEAP_GROWING_PERCENT: {
    kind: 'int',
    default: 100,
    min: 0,
    max: 400,
    description:
      "Old-generation heap growth allowed between full garbage collections, in percent of the live heap (V8 --heap-growing-percent); 0 keeps V8's adaptive default. 100 halved the CPU per streamed byte in the benchmarks (fewer full collections) for up to one live heap (about 60 MiB) more memory.",
  },
} as const satisfies EnvSpec;

/**
 * Periscope's own namespaces are admin-only (design §10); the server and the agent share these
 * settings. Each chart sets them: its release namespace plus `protectedNamespaces`, and
 * `clusterRBAC.enabled`.
 */
export const PROTECTION_ENV = {
  PERISCOPE_PROTECTED_NAMESPACES: {
    kind: 'list',
    default: [],
    pattern: DNS_LABEL,
    patternHint: 'namespace names (DNS labels)',
    maxItems: 64,
    description:
      "Namespaces of this app's own cluster that only the admin tier may touch, besides the shell namespace while the cluster shell is on (the chart sets its release namespace and protectedNamespaces): pod exec there is refused with E_PROTECTED_NAMESPACE, their pods are hidden from other tiers, and the tier binder binds no `edit` there.",
  },
  PERISCOPE_TIER_BINDINGS: {
    kind: 'boolean',
    default: false,
    description:
      "Run the tier binder on this app's own cluster: keep RoleBindings of periscope-tier:write and periscope-tier:maintain to ClusterRole edit in every namespace except the protected ones (the chart sets it from clusterRBAC.enabled and grants the RBAC it needs).",
  },
} as const satisfies EnvSpec;
