import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { describe, expect, it } from 'vitest';

import { AGENT_ENV } from '../../apps/agent/src/config/agent-env';
import { SERVER_ENV } from '../../apps/server/src/config/server-env';
import { AGENT_REQUIRED, SHELL_EGRESS } from './cases';
import {
  appVersion,
  at,
  CHARTS_DIR,
  chartValues,
  deploymentEnv,
  parseManifests,
  render,
  ROOT,
  setAt,
  type ChartName,
} from './helm';

/** The operator guide lives beside the repository, read-only, and may change under us. */
const GUIDE = resolve(ROOT, '..', 'shared', 'seed', 'cluster-shell.md');
const GUIDE_COPY = resolve(__dirname, 'guide-env-table.md');
const TABLE_ROW = /^\|?\s*`?clusterShell\.[\w.]+`?(\s*\+\s*tag)?\s*\|\s*`?PERISCOPE_CLUSTER_SHELL_\w+`?\s*\|/;

interface GuideRow {
  /** Helm value paths: one, or repository + tag for the image */
  paths: string[];
  env: string;
  /** the guide's code default, without a trailing "(20 min)"-style note */
  default: string;
}

/**
 * Where the charts deliberately differ from the guide's table, each with its reason and the exact
 * shape the guide's default must have for the difference to stay the documented one. Nothing else
 * may differ: a guide change outside this shape fails the tests instead of being absorbed.
 */
interface GuideDeviation {
  env: string;
  reason: string;
  /** what the guide's default must look like (checked, so a changed guide is noticed) */
  guide: RegExp;
  /** this project's default in its place */
  ours: string;
}

const GUIDE_DEVIATIONS: readonly GuideDeviation[] = [
  {
    env: 'PERISCOPE_CLUSTER_SHELL_IMAGE',
    reason:
      "the guide names another project's registry path, whose images are a different program; the charts name " +
      "this project's own shell image under the placeholder registry operators set (docs/shell-image.md, " +
      '"Image names and the registry you publish to")',
    // the same image name and tag under another registry path: only the registry part differs
    guide:
      /^(?!registry\.example\.com\/periscope\/)[a-z0-9.-]+(?::\d+)?(?:\/[a-z0-9._-]+)*\/periscope-shell:<AppVersion>$/,
    ours: 'registry.example.com/periscope/periscope-shell:<AppVersion>',
  },
];

/** Rows may or may not start with a pipe; groups: path, " + tag", env, default. */
const ROW =
  /^\|?\s*`?(clusterShell\.[\w.]+)`?(\s*\+\s*tag)?\s*\|\s*`?(PERISCOPE_CLUSTER_SHELL_\w+)`?\s*\|\s*`?([^|`]*?)`?\s*\|/;

/** Rows of the guide's "Helm value | Env var | Code default" cross-reference table (§2). */
function guideTableLines(text: string): string[] {
  return text.split('\n').filter((line) => TABLE_ROW.test(line));
}

/** A guide line with its documented deviation applied; throws if the guide no longer has the documented shape. */
function deviateLine(line: string): string {
  const m = ROW.exec(line);
  const dev = m ? GUIDE_DEVIATIONS.find((d) => d.env === m[3]) : undefined;
  if (!m || !dev) return line;
  const dflt = m[4]!;
  if (!dev.guide.test(dflt))
    throw new Error(
      `the guide's default of ${dev.env} is now "${dflt}", not the shape GUIDE_DEVIATIONS documents (${String(dev.guide)}); ` +
        'decide whether the deviation still holds and update GUIDE_DEVIATIONS, the charts and guide-env-table.md',
    );
  return line.replace(dflt, dev.ours);
}

/**
 * The table lines the charts must follow: the guide's with the documented deviations applied, or
 * the committed copy (which holds them applied) where ../shared is not checked out.
 */
function chartTableLines(): string[] {
  return existsSync(GUIDE)
    ? guideTableLines(readFileSync(GUIDE, 'utf8')).map(deviateLine)
    : guideTableLines(readFileSync(GUIDE_COPY, 'utf8'));
}

function guideRows(): GuideRow[] {
  const rows: GuideRow[] = [];
  for (const line of chartTableLines()) {
    const m = ROW.exec(line);
    if (!m) continue;
    const [, path, plusTag, env, dflt] = m;
    const paths = plusTag ? [path!, path!.replace(/\.repository$/, '.tag')] : [path!];
    rows.push({ paths, env: env!, default: dflt!.replace(/\s*\(.*\)\s*$/, '').trim() });
  }
  return rows;
}

const SERVER_CHART: ChartName = 'periscope';
const version = appVersion(SERVER_CHART);

/** What the guide's default means once the chart's appVersion is known. */
const expectedDefault = (row: GuideRow): string => row.default.replace('<AppVersion>', version);

const text = (v: unknown): string =>
  typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? String(v) : JSON.stringify(v);

/** The env value a Helm value renders to: lists comma-joined, the image as repository:tag. */
function envValueOf(values: unknown, row: GuideRow): string {
  if (row.paths.length === 2) {
    const tag = at(values, row.paths[1]!);
    return `${text(at(values, row.paths[0]!))}:${tag === '' || tag === undefined ? version : text(tag)}`;
  }
  const v = at(values, row.paths[0]!);
  return Array.isArray(v) ? v.map(text).join(',') : text(v);
}

/** A value for the path that differs from its default, so a wrong mapping cannot pass by luck. */
function otherValue(path: string, current: unknown): unknown {
  switch (path) {
    case 'clusterShell.enabled':
      return true;
    case 'clusterShell.mode':
      return 'bash'; // the only mode; the default test already shows it renders
    case 'clusterShell.tiers':
      return ['write', 'admin'];
    case 'clusterShell.namespace':
      return 'shells-elsewhere';
    case 'clusterShell.image.repository':
      return 'registry.example.com/mirror/periscope-shell';
    case 'clusterShell.image.tag':
      return '9.9.9-custom';
    case 'clusterShell.image.pullPolicy':
      return 'Always';
    default:
      if (typeof current === 'number') return current + 7;
      throw new Error(`no alternative value for ${path}; extend otherValue`);
  }
}

describe("the guide's env cross-reference table (../shared/seed/cluster-shell.md §2)", () => {
  const rows = guideRows();
  const defaults = chartValues(SERVER_CHART);

  it('is found and has every row the guide lists', () => {
    expect(rows.map((r) => r.env)).toEqual(
      expect.arrayContaining([
        'PERISCOPE_CLUSTER_SHELL_ENABLED',
        'PERISCOPE_CLUSTER_SHELL_TIERS',
        'PERISCOPE_CLUSTER_SHELL_IMAGE',
        'PERISCOPE_CLUSTER_SHELL_IMAGE_PULL_POLICY',
      ]),
    );
    expect(rows.length).toBeGreaterThanOrEqual(11);
  });

  // The committed copy must equal the guide, with the documented deviations applied, wherever
  // ../shared is checked out (it is read-only and may change between sessions); where it is
  // absent the copy stands in for it.
  it.runIf(existsSync(GUIDE))(
    'keeps its committed copy (guide-env-table.md) equal to the guide plus the documented deviations',
    () => {
      expect(guideTableLines(readFileSync(GUIDE_COPY, 'utf8'))).toEqual(chartTableLines());
    },
  );

  it.runIf(existsSync(GUIDE))(
    'differs from the guide exactly in the documented deviations (GUIDE_DEVIATIONS), nowhere else',
    () => {
      const guide = guideTableLines(readFileSync(GUIDE, 'utf8'));
      const ours = chartTableLines();
      const changed = guide
        .map((line, i) => ({ line, i, env: ROW.exec(line)?.[3] }))
        .filter(({ line, i }) => ours[i] !== line)
        .map(({ env }) => env);
      expect(changed).toEqual(GUIDE_DEVIATIONS.map((d) => d.env));
      for (const dev of GUIDE_DEVIATIONS) {
        const line = guide.find((l) => ROW.exec(l)?.[3] === dev.env);
        expect(line, `${dev.env} in the guide`).toBeDefined();
        const guideDefault = ROW.exec(line!)![4]!;
        expect(guideDefault, dev.reason).toMatch(dev.guide);
        expect(guideDefault).not.toBe(dev.ours);
        // only the registry path differs: the same image name and tag
        expect(guideDefault.slice(guideDefault.lastIndexOf('/'))).toBe(
          dev.ours.slice(dev.ours.lastIndexOf('/')),
        );
      }
    },
  );

  it('documents each deviation where operators read it', () => {
    const shellImageDoc = readFileSync(join(ROOT, 'docs', 'shell-image.md'), 'utf8');
    expect(shellImageDoc).toContain('### Image names and the registry you publish to');
    for (const dev of GUIDE_DEVIATIONS) {
      expect(dev.reason.length).toBeGreaterThan(40);
      expect(shellImageDoc).toContain(dev.ours.replace(/:<AppVersion>$/, ''));
    }
  });

  it('names Helm values that exist in values.yaml, with the guide defaults', () => {
    for (const row of rows) {
      for (const p of row.paths)
        expect(at(defaults, p), `${p} in charts/periscope/values.yaml`).toBeDefined();
      expect(envValueOf(defaults, row), `default of ${row.paths.join(' + ')}`).toBe(expectedDefault(row));
    }
  });

  it('renders every variable with its default value', () => {
    const env = deploymentEnv(parseManifests(render(SERVER_CHART, {})));
    for (const row of rows) expect(env.get(row.env)?.value, row.env).toBe(expectedDefault(row));
  });

  it('renders every variable from its Helm value (each set to a non-default)', () => {
    const values: Record<string, unknown> = {
      auth: { authorization: { mode: 'tier' } },
      clusterShell: { networkPolicy: SHELL_EGRESS },
    };
    for (const row of rows) for (const p of row.paths) setAt(values, p, otherValue(p, at(defaults, p)));
    const env = deploymentEnv(parseManifests(render(SERVER_CHART, values)));
    for (const row of rows) {
      const expected = envValueOf(values, row);
      expect(expected, `${row.env} test value must differ from the default`).not.toBe(
        row.env.endsWith('_MODE') ? '' : expectedDefault(row),
      );
      expect(env.get(row.env)?.value, row.env).toBe(expected);
    }
  });

  it('defaults the shell image tag to the chart appVersion', () => {
    const env = deploymentEnv(
      parseManifests(
        render(SERVER_CHART, { clusterShell: { image: { repository: 'mirror.example/shell' } } }),
      ),
    );
    expect(env.get('PERISCOPE_CLUSTER_SHELL_IMAGE')?.value).toBe(`mirror.example/shell:${version}`);
  });
});

/** clusterShell.maxSessionsPerUser → PERISCOPE_CLUSTER_SHELL_MAX_SESSIONS_PER_USER */
const envName = (prefix: string, key: string): string =>
  `${prefix}${key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()}`;

describe('the server Deployment against the server configuration (apps/server/src/config/server-env.ts)', () => {
  const objects = parseManifests(
    render(SERVER_CHART, {
      agentTunnel: { enabled: true, url: 'https://tunnel.example.com:8443', extraSANs: ['10.1.2.3'] },
    }),
  );
  const env = deploymentEnv(objects);
  const defaults = chartValues(SERVER_CHART);

  it('sets only variables the server reads', () => {
    // NODE_OPTIONS is Node's own (V8 flags that must be set before the heap exists)
    for (const name of env.keys())
      if (name !== 'NODE_OPTIONS') expect(Object.keys(SERVER_ENV), name).toContain(name);
    expect(env.get('NODE_OPTIONS')?.value).toBe('--max-semi-space-size=4');
  });

  it('sets the runtime settings at the server default', () => {
    const spec = SERVER_ENV.PERISCOPE_HEAP_GROWING_PERCENT;
    expect(env.get('PERISCOPE_HEAP_GROWING_PERCENT')?.value).toBe(String(spec.default));
  });

  it('sets every cluster-shell and exec variable, at the server default', () => {
    const names = Object.keys(SERVER_ENV).filter((n) => /^PERISCOPE_(CLUSTER_SHELL|EXEC)_/.test(n));
    for (const name of names) {
      const spec = SERVER_ENV[name as keyof typeof SERVER_ENV];
      const d = spec.default as unknown;
      // unset by default (the pod template's variables): rendered empty, which the server reads as unset
      const expected = d === undefined ? '' : Array.isArray(d) ? d.join(',') : text(d);
      expect(env.get(name)?.value, name).toBe(expected);
    }
  });

  it.each([
    ['clusterShell', 'PERISCOPE_CLUSTER_SHELL_'],
    ['exec', 'PERISCOPE_EXEC_'],
  ])('maps each %s.<key> to %s<KEY> one to one', (section, prefix) => {
    const keys = Object.keys(defaults[section] as Record<string, unknown>).filter(
      // chart-only keys: they shape what the chart installs, the server never sees them
      (k) => !['image', 'createNamespace', 'podSecurityStandard', 'networkPolicy', 'pod'].includes(k),
    );
    // clusterShell.pod.<key> → PERISCOPE_CLUSTER_SHELL_POD_<KEY>
    const pod = (defaults[section] as Record<string, unknown>)['pod'] as Record<string, unknown> | undefined;
    for (const key of Object.keys(pod ?? {})) {
      const name = envName(`${prefix}POD_`, key);
      expect(env.has(name), `${section}.pod.${key} → ${name}`).toBe(true);
    }
    for (const key of keys) {
      const name = envName(prefix, key);
      expect(env.has(name), `${section}.${key} → ${name}`).toBe(true);
    }
  });

  it('sets the fixed wiring: listen on all addresses, port 8080, oidc, mounted files', () => {
    const v = (n: string): string | undefined => env.get(n)?.value;
    expect(v('PERISCOPE_LISTEN_ADDRESS')).toBe('0.0.0.0');
    expect(v('PERISCOPE_HTTP_PORT')).toBe('8080');
    expect(v('PERISCOPE_AUTH_MODE')).toBe('oidc');
    expect(v('PERISCOPE_CLUSTERS_FILE')).toBe('/etc/periscope/clusters/clusters.yaml');
    expect(v('PERISCOPE_AUTH_FILE')).toBe('/etc/periscope/auth/auth.yaml');
    expect(v('PERISCOPE_DATA_DIR')).toBe('/var/lib/periscope');
  });

  it('puts /metrics and /readyz on the ops port (metrics.port), apart from the public port', () => {
    expect(env.get('PERISCOPE_METRICS_PORT')?.value).toBe('9090');
    const docs = parseManifests(
      render(SERVER_CHART, { metrics: { port: 9191, serviceMonitor: { enabled: true } } }),
    );
    expect(deploymentEnv(docs).get('PERISCOPE_METRICS_PORT')?.value).toBe('9191');
    const deployment = docs.find((d) => d['kind'] === 'Deployment') as unknown as {
      spec: {
        template: {
          spec: {
            containers: {
              ports: { name: string; containerPort: number }[];
              readinessProbe: { httpGet: { port: string; path: string } };
              livenessProbe: { httpGet: { port: string; path: string } };
            }[];
          };
        };
      };
    };
    const c = deployment.spec.template.spec.containers[0];
    expect(c?.ports).toContainEqual({ name: 'metrics', containerPort: 9191, protocol: 'TCP' });
    expect(c?.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
    expect(c?.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' });
    const monitor = docs.find((d) => d['kind'] === 'ServiceMonitor') as unknown as {
      spec: { endpoints: { port: string; path: string }[] };
    };
    expect(monitor.spec.endpoints[0]).toMatchObject({ port: 'metrics', path: '/metrics' });
  });

  it('names its release namespace and protectedNamespaces as protected; the tier binder follows clusterRBAC', () => {
    expect(env.get('PERISCOPE_PROTECTED_NAMESPACES')?.value).toBe('periscope-system,kube-system');
    expect(env.get('PERISCOPE_TIER_BINDINGS')?.value).toBe('false');
    const on = deploymentEnv(
      parseManifests(
        render(
          SERVER_CHART,
          { clusterRBAC: { enabled: true }, protectedNamespaces: ['vault'] },
          { namespace: 'ops' },
        ),
      ),
    );
    expect(on.get('PERISCOPE_PROTECTED_NAMESPACES')?.value).toBe('ops,vault');
    expect(on.get('PERISCOPE_TIER_BINDINGS')?.value).toBe('true');
  });

  it('configures the agent tunnel listener when it is exposed', () => {
    const v = (n: string): string | undefined => env.get(n)?.value;
    expect(v('PERISCOPE_AGENT_TUNNEL_ADDRESS')).toBe('0.0.0.0');
    expect(v('PERISCOPE_AGENT_TUNNEL_PORT')).toBe('8443');
    expect(v('PERISCOPE_AGENT_TUNNEL_URL')).toBe('https://tunnel.example.com:8443');
    expect(v('PERISCOPE_AGENT_TUNNEL_SANS')).toBe('tunnel.example.com,10.1.2.3');
    expect(v('PERISCOPE_AGENT_TUNNEL_GRACE_SECONDS')).toBe(
      String(SERVER_ENV.PERISCOPE_AGENT_TUNNEL_GRACE_SECONDS.default),
    );
    const without = deploymentEnv(parseManifests(render(SERVER_CHART, {})));
    expect([...without.keys()].filter((n) => n.startsWith('PERISCOPE_AGENT_TUNNEL_'))).toEqual([]);
  });

  it('uses the same ranges and choices in values.schema.json as the server', () => {
    const schema = JSON.parse(readFileSync(join(CHARTS_DIR, SERVER_CHART, 'values.schema.json'), 'utf8')) as {
      properties: Record<
        string,
        { properties: Record<string, { minimum?: number; maximum?: number; enum?: string[] }> }
      >;
    };
    for (const [section, prefix] of [
      ['clusterShell', 'PERISCOPE_CLUSTER_SHELL_'],
      ['exec', 'PERISCOPE_EXEC_'],
      ['agentTunnel', 'PERISCOPE_AGENT_TUNNEL_'],
    ] as const) {
      for (const [key, prop] of Object.entries(schema.properties[section]!.properties)) {
        const spec = (SERVER_ENV as Record<string, (typeof SERVER_ENV)[keyof typeof SERVER_ENV]>)[
          envName(prefix, key)
        ];
        if (spec?.kind === 'int') {
          expect([prop.minimum, prop.maximum], `${section}.${key}`).toEqual([spec.min, spec.max]);
        }
        if (spec?.kind === 'enum') expect(prop.enum, `${section}.${key}`).toEqual([...spec.values]);
      }
    }
    const pull = schema.properties['clusterShell']!.properties['image'] as unknown as {
      properties: { pullPolicy: { enum: string[] } };
    };
    expect(pull.properties.pullPolicy.enum).toEqual([
      ...SERVER_ENV.PERISCOPE_CLUSTER_SHELL_IMAGE_PULL_POLICY.values,
    ]);
  });
});

describe('the agent Deployment against the agent configuration (apps/agent/src/config/agent-env.ts)', () => {
  const full = {
    agent: {
      ...AGENT_REQUIRED,
      registrationURL: 'https://periscope.example.com',
      serverCAHash: `sha256:${'0f'.repeat(32)}`,
      registrationToken: { existingSecret: 'reg', existingSecretKey: 'tok' },
      stateSecretName: 'state',
      healthPort: 9091,
      logLevel: 'warn',
      heapGrowingPercent: 50,
      maxSemiSpaceMiB: 8,
    },
    clusterShell: {
      enabled: true,
      tiers: ['maintain', 'admin'],
      namespace: 'shells',
      networkPolicy: SHELL_EGRESS,
      maxSessionSeconds: 3600,
      sweep: { intervalSeconds: 60, graceSeconds: 120 },
    },
    protectedNamespaces: ['kube-system', 'cert-manager'],
    clusterRBAC: { enabled: true },
  };
  const env = deploymentEnv(parseManifests(render('periscope-agent', full, { namespace: 'agents' })));

  it('sets exactly the variables the agent reads, when every value is given', () => {
    // NODE_OPTIONS is Node's own (V8 flags that must be set before the heap exists)
    expect([...env.keys()].filter((k) => k !== 'NODE_OPTIONS').sort()).toEqual(Object.keys(AGENT_ENV).sort());
  });

  it('passes the young-generation cap to V8 through NODE_OPTIONS, and nothing at 0', () => {
    expect(env.get('NODE_OPTIONS')?.value).toBe('--max-semi-space-size=8');
    const off = deploymentEnv(
      parseManifests(
        render(
          'periscope-agent',
          { ...full, agent: { ...full.agent, maxSemiSpaceMiB: 0 } },
          { namespace: 'agents' },
        ),
      ),
    );
    expect(off.has('NODE_OPTIONS')).toBe(false);
    expect(off.get('PERISCOPE_HEAP_GROWING_PERCENT')?.value).toBe('50');
  });

  it('maps each value', () => {
    const v = (n: string): string | undefined => env.get(n)?.value;
    expect(v('PERISCOPE_SERVER_URL')).toBe(AGENT_REQUIRED.serverURL);
    expect(v('PERISCOPE_REGISTRATION_URL')).toBe('https://periscope.example.com');
    expect(v('PERISCOPE_CLUSTER_NAME')).toBe('edge-1');
    expect(v('PERISCOPE_SERVER_CA_HASH')).toBe(`sha256:${'0f'.repeat(32)}`);
    expect(env.get('PERISCOPE_REGISTRATION_TOKEN')?.valueFrom?.secretKeyRef).toEqual({
      name: 'reg',
      key: 'tok',
      optional: true,
    });
    expect(v('PERISCOPE_AGENT_NAMESPACE')).toBe('agents');
    expect(v('PERISCOPE_AGENT_SECRET_NAME')).toBe('state');
    expect(v('PERISCOPE_AGENT_LISTEN_ADDRESS')).toBe('0.0.0.0');
    expect(v('PERISCOPE_AGENT_HEALTH_PORT')).toBe('9091');
    expect(v('PERISCOPE_LOG_LEVEL')).toBe('warn');
    expect(v('PERISCOPE_HEAP_GROWING_PERCENT')).toBe('50');
    expect(v('PERISCOPE_CLUSTER_SHELL_ENABLED')).toBe('true');
    expect(v('PERISCOPE_CLUSTER_SHELL_TIERS')).toBe('maintain,admin');
    expect(v('PERISCOPE_CLUSTER_SHELL_NAMESPACE')).toBe('shells');
    expect(v('PERISCOPE_CLUSTER_SHELL_MAX_SESSION_SECONDS')).toBe('3600');
    expect(v('PERISCOPE_REAPER_INTERVAL_SECONDS')).toBe('60');
    expect(v('PERISCOPE_REAPER_GRACE_SECONDS')).toBe('120');
    expect(v('PERISCOPE_PROTECTED_NAMESPACES')).toBe('agents,kube-system,cert-manager');
    expect(v('PERISCOPE_TIER_BINDINGS')).toBe('true');
  });

  it('defaults the cluster-shell variables as the agent does', () => {
    const minimal = deploymentEnv(parseManifests(render('periscope-agent', { agent: AGENT_REQUIRED })));
    for (const name of [
      'PERISCOPE_CLUSTER_SHELL_ENABLED',
      'PERISCOPE_CLUSTER_SHELL_TIERS',
      'PERISCOPE_CLUSTER_SHELL_NAMESPACE',
      'PERISCOPE_CLUSTER_SHELL_MAX_SESSION_SECONDS',
      'PERISCOPE_REAPER_INTERVAL_SECONDS',
      'PERISCOPE_REAPER_GRACE_SECONDS',
    ] as const) {
      const d = AGENT_ENV[name].default as unknown;
      expect(minimal.get(name)?.value, name).toBe(Array.isArray(d) ? d.join(',') : String(d));
    }
  });
});
