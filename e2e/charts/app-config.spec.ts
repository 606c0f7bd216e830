import { describe, expect, it } from 'vitest';

import { loadAgentConfig } from '../../apps/agent/src/config/agent-config';
import { loadServerConfig } from '../../apps/server/src/config/server-config';
import { RENDER_CASES } from './cases';
import { find, one, parseManifests, podSpec, render, type K8sObject } from './helm';

interface VolumeMount {
  name: string;
  mountPath: string;
}
interface Volume {
  name: string;
  configMap?: { name: string };
}

/** Stand-ins for Secret values the server checks the form of; any other Secret reference gets a name. */
const SECRET_STAND_INS: Record<string, string> = {
  PERISCOPE_REDIS_URL: 'rediss://:stand-in@redis.example.com:6379/0',
  PERISCOPE_DATABASE_URL: 'postgres://periscope:stand-in@db.example.com:5432/periscope?sslmode=verify-full',
  PERISCOPE_SESSION_KEY: Buffer.alloc(32, 7).toString('base64'),
  PERISCOPE_REPLICA_SECRET: 'a-replica-secret-stand-in-of-48-characters-000000',
};
/** The downward API of a pod named POD_NAME at POD_IP. */
const POD_NAME = 'periscope-7d9f8b6c5-x2k4q';
const POD_IP = '10.244.1.17';
const FIELDS: Record<string, string> = { 'metadata.name': POD_NAME, 'status.podIP': POD_IP };

/**
 * What the container would see: its env (a Secret reference becomes a stand-in value, a field
 * reference the pod's name or IP, $(VAR) of an earlier variable its value, as the kubelet does)
 * and a readFile over its ConfigMap mounts, built from the rendered objects alone.
 */
function containerView(objects: K8sObject[]): {
  env: Record<string, string>;
  readFile: (path: string) => string;
} {
  const pod = podSpec(one(objects, 'Deployment'));
  const container = pod.containers[0]!;
  const env: Record<string, string> = {};
  for (const e of container.env ?? []) {
    const ref = e.valueFrom?.secretKeyRef;
    const field = e.valueFrom?.fieldRef?.fieldPath;
    if (field !== undefined && FIELDS[field] === undefined) throw new Error(`no stand-in for field ${field}`);
    env[e.name] =
      e.value?.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (whole, name: string) => env[name] ?? whole) ??
      (field !== undefined ? FIELDS[field]! : undefined) ??
      (ref ? (SECRET_STAND_INS[e.name] ?? `from-secret-${ref.name}-${ref.key}`) : '');
  }
  const mounts = (container as unknown as { volumeMounts?: VolumeMount[] }).volumeMounts ?? [];
  const volumes = (pod as unknown as { volumes?: Volume[] }).volumes ?? [];
  const readFile = (path: string): string => {
    for (const m of mounts) {
      if (!path.startsWith(`${m.mountPath}/`)) continue;
      const cmName = volumes.find((v) => v.name === m.name)?.configMap?.name;
      if (cmName === undefined) continue;
      const data = find(objects, 'ConfigMap', cmName).at(0)?.['data'] as Record<string, string> | undefined;
      const content = data?.[path.slice(m.mountPath.length + 1)];
      if (content !== undefined) return content;
    }
    throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
  };
  return { env, readFile };
}

describe('the server accepts what the periscope chart renders (loadServerConfig)', () => {
  const cases = RENDER_CASES.filter((c) => c.chart === 'periscope' && c.name !== 'server-defaults');

  it.each(cases)('$name', ({ values }) => {
    const { env, readFile } = containerView(parseManifests(render('periscope', values)));
    const config = loadServerConfig(env, readFile);
    expect(config.authMode).toBe('oidc');
    expect(config.http.listenAddress).toBe('0.0.0.0');
    const shell = (values['clusterShell'] ?? {}) as { enabled?: boolean; tiers?: string[] };
    expect(config.clusterShell.enabled).toBe(shell.enabled ?? false);
    expect(config.clusterShell.tiers).toEqual(shell.tiers ?? ['admin']);
    const clusters = (values['clusters'] ?? []) as { name: string }[];
    expect(config.clusters.map((c) => c.name)).toEqual(clusters.map((c) => c.name));
    if (env['PERISCOPE_OIDC_CLIENT_SECRET'] !== undefined)
      expect(config.auth.oidc?.clientSecret).toBe(env['PERISCOPE_OIDC_CLIENT_SECRET']);
  });

  it('refuses the chart defaults only for the missing OIDC provider, as NOTES.txt warns', () => {
    const { env, readFile } = containerView(parseManifests(render('periscope', {})));
    expect(() => loadServerConfig(env, readFile)).toThrow(/oidc\.issuer and oidc\.clientID/);
  });
});

describe('the chart maps several replicas to the server (loadServerConfig)', () => {
  it('server-replicas: Redis, PostgreSQL, the keys, and this pod as the replica others forward to', () => {
    const c = RENDER_CASES.find((r) => r.name === 'server-replicas');
    if (!c) throw new Error('no server-replicas case');
    const { env, readFile } = containerView(parseManifests(render('periscope', c.values)));
    const config = loadServerConfig(env, readFile);
    expect(config.sharedState.redis).toBeDefined();
    expect(config.sharedState).toMatchObject({
      keyPrefix: 'prod-eu:',
      replicaId: POD_NAME,
      replicaUrl: `http://${POD_IP}:8080`,
      replicaSecret: SECRET_STAND_INS['PERISCOPE_REPLICA_SECRET'],
      sessionSecret: SECRET_STAND_INS['PERISCOPE_SESSION_KEY'],
    });
    expect(config.audit.postgres).toBeDefined();
    expect(config.http.port).toBe(8080);
  });
});

describe('the agent accepts what the periscope-agent chart renders (loadAgentConfig)', () => {
  // mode=rbac-only renders no agent.
  const agentCases = RENDER_CASES.filter(
    (c) => c.chart === 'periscope-agent' && c.values['mode'] !== 'rbac-only',
  );
  it.each(agentCases)('$name', ({ values }) => {
    const { env } = containerView(parseManifests(render('periscope-agent', values)));
    const config = loadAgentConfig(env);
    const agent = values['agent'] as { clusterName: string; serverURL: string };
    expect(config.clusterName).toBe(agent.clusterName);
    expect(config.serverUrl).toBe(agent.serverURL);
    expect(config.namespace).toBe('periscope-system');
  });
});

describe('the chart maps the shell pod template and modes per tier to the server (loadServerConfig)', () => {
  it('server-shell-pod-template: the server sees exactly the values, server-wide and per cluster', () => {
    const c = RENDER_CASES.find((r) => r.name === 'server-shell-pod-template');
    if (!c) throw new Error('no server-shell-pod-template case');
    const { env, readFile } = containerView(parseManifests(render('periscope', c.values)));
    const config = loadServerConfig(env, readFile);
    const values = c.values['clusterShell'] as { modeByTier: unknown; pod: unknown };
    expect(config.clusterShell.modeByTier).toEqual(values.modeByTier);
    expect(config.clusterShell.pod).toEqual(values.pod);
    const clusters = c.values['clusters'] as { clusterShell: unknown; inClusterServer?: string }[];
    expect(config.clusters.map((x) => x.clusterShell)).toEqual(clusters.map((x) => x.clusterShell));
    expect(config.clusters[0]).toMatchObject({ inClusterServer: clusters[0]?.inClusterServer });
  });
});
