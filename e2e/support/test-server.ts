import 'reflect-metadata';

import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { NestExpressApplication } from '@nestjs/platform-express';

import { loadServerConfig, type ServerConfig } from '../../apps/server/src/config/server-config';
import { createServerApp } from '../../apps/server/src/server-app';
import type { TestClusterClient } from '../k8s/cluster';

/**
 * Shared set-up of the integration specs that run the Nest server in-process against the local
 * control plane: a pod to exec into with the tiers' rights, a config dir (auth and clusters
 * files), and the server listening on 127.0.0.1.
 */

/** A tier's rights: a RoleBinding in the namespace, or (`cluster: true`) a ClusterRoleBinding. */
export interface TierGrant {
  /** The Periscope tier; the binding's subject is the group `periscope-tier:<tier>`. */
  tier: string;
  /** The ClusterRole bound. */
  role: string;
  /** The binding's name (a ClusterRoleBinding's name must be unique across the cluster). */
  name: string;
  cluster?: boolean;
}

/**
 * Creates the namespace, a pod (`app` running busybox unless told otherwise; container `main`,
 * sleeping) and one binding a grant, and waits up to 60 s for the pod to be Ready.
 */
export async function startExecPod(
  cluster: TestClusterClient,
  ns: string,
  grants: readonly TierGrant[],
  { pod = 'app', image = 'busybox' }: { pod?: string; image?: string } = {},
): Promise<void> {
  await cluster.createNamespace(ns);
  await cluster.apply(
    [
      {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: pod, namespace: ns },
        spec: {
          terminationGracePeriodSeconds: 1,
          containers: [{ name: 'main', image, command: ['sleep', '3600'] }],
        },
      },
      ...grants.map((g) => ({
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: g.cluster === true ? 'ClusterRoleBinding' : 'RoleBinding',
        metadata: g.cluster === true ? { name: g.name } : { name: g.name, namespace: ns },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: g.role },
        subjects: [
          { kind: 'Group', name: `periscope-tier:${g.tier}`, apiGroup: 'rbac.authorization.k8s.io' },
        ],
      })),
    ]
      .map((o) => JSON.stringify(o))
      .join('\n'),
  );
  await cluster.kubectlOk(['-n', ns, 'wait', '--for=condition=Ready', `pod/${pod}`, '--timeout=60s']);
}

export interface DevAuth {
  /** Group to tier, e.g. `{ admins: 'admin' }`. */
  groupTiers: Readonly<Record<string, string>>;
  /** Dev-mode users: subject and groups. */
  users: readonly { subject: string; groups: readonly string[] }[];
}

function devAuthLines(auth: DevAuth): string[] {
  const tiers = Object.entries(auth.groupTiers)
    .map(([g, t]) => `${g}: ${t}`)
    .join(', ');
  return [
    'authorization:',
    '  mode: tier',
    `  groupTiers: { ${tiers} }`,
    'dev:',
    '  users:',
    ...auth.users.map((u) => `    - { subject: ${u.subject}, groups: [${u.groups.join(', ')}] }`),
  ];
}

/**
 * `auth.yaml` lines for OIDC sign-in at a test provider (e2e/support/oidc-idp.ts) with the usual
 * tiers: developers read, sre maintain, platform-admins admin (no other group may sign in).
 */
function oidcTierAuthLines(idp: { issuer: string; clientId: string }): string[] {
  return [
    'oidc:',
    `  issuer: ${idp.issuer}`,
    `  clientID: ${idp.clientId}`,
    '  scopes: [openid, profile, email, offline_access, groups]',
    'authorization:',
    '  mode: tier',
    '  groupsClaim: groups',
    '  allowedGroups: [developers, sre, platform-admins]',
    '  groupTiers: { developers: read, sre: maintain, platform-admins: admin }',
  ];
}

/**
 * A fresh config dir (`periscope-<name>-*` under the OS temp dir) with `auth.yaml` (tier
 * authorization and dev users from a DevAuth, or `{ oidc }`: sign-in at that test provider with
 * the usual tiers) and `clusters.yaml` (the given entries under `clusters:`; one cluster `lab` on
 * the admin kubeconfig when none are given). Returns the dir.
 */
export function writeConfigDir(
  name: string,
  adminKubeconfig: string,
  auth: DevAuth | { oidc: { issuer: string; clientId: string } },
  clusters: readonly string[] = [`{ name: lab, backend: kubeconfig, kubeconfigPath: ${adminKubeconfig} }`],
): string {
  const dir = mkdtempSync(join(tmpdir(), `periscope-${name}-`));
  writeFileSync(
    join(dir, 'auth.yaml'),
    [...('users' in auth ? devAuthLines(auth) : oidcTierAuthLines(auth.oidc)), ''].join('\n'),
  );
  writeFileSync(join(dir, 'clusters.yaml'), ['clusters:', ...clusters.map((c) => `  - ${c}`), ''].join('\n'));
  return dir;
}

/**
 * The server configuration for a config dir from writeConfigDir: dev sign-in (unless `env` sets
 * PERISCOPE_AUTH_MODE), its auth and clusters files, data under `<dir>/data`, log level warn;
 * `env` adds to or overrides these.
 */
export function testServerConfig(dir: string, env: Readonly<Record<string, string>> = {}): ServerConfig {
  return loadServerConfig(
    {
      PERISCOPE_AUTH_MODE: 'dev',
      PERISCOPE_AUTH_FILE: join(dir, 'auth.yaml'),
      PERISCOPE_CLUSTERS_FILE: join(dir, 'clusters.yaml'),
      PERISCOPE_DATA_DIR: join(dir, 'data'),
      PERISCOPE_LOG_LEVEL: 'warn',
      ...env,
    },
    (p) => readFileSync(p, 'utf8'),
  );
}

export interface TestServer {
  server: NestExpressApplication;
  /** `http://127.0.0.1:<port>`. */
  base: string;
  stop(): Promise<void>;
}

/** Starts the server on 127.0.0.1 (`port` 0: any free one). */
export async function startTestServer(config: ServerConfig, port = 0): Promise<TestServer> {
  const server = await createServerApp(config);
  await server.listen(port, '127.0.0.1');
  const base = await server.getUrl();
  return { server, base, stop: () => server.close() };
}

/** The replica secret (PERISCOPE_REPLICA_SECRET) the specs' server replicas share. */
export const TEST_REPLICA_SECRET = 'replica-secret-shared-by-the-test-replicas';

/**
 * Settings (for testServerConfig) of replica `id` among server instances sharing the Redis at
 * `redisUrl`: that Redis, the test replica secret, cluster shell off, public URL `publicUrl`, the
 * ops listener on any free port. Spread further settings after it.
 */
export function sharedRedisReplicaEnv(
  redisUrl: string,
  id: string,
  publicUrl: string,
): Record<string, string> {
  return {
    PERISCOPE_CLUSTER_SHELL_ENABLED: 'false',
    PERISCOPE_PUBLIC_URL: publicUrl,
    PERISCOPE_REDIS_URL: redisUrl,
    PERISCOPE_REPLICA_SECRET: TEST_REPLICA_SECRET,
    PERISCOPE_REPLICA_ID: id,
    PERISCOPE_METRICS_PORT: '0',
  };
}
