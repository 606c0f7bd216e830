import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { NestExpressApplication } from '@nestjs/platform-express';
import request from 'supertest';

import { loadServerConfig } from '../config/server-config';
import { createServerApp } from '../server-app';

/** A dev-login user of the test server and the groups the tier mapping reads. */
export interface DevUser {
  subject: string;
  groups: string[];
}

export interface DevTierAppOptions {
  /** prefix of the temporary directory (auth file, clusters file, data directory) */
  prefix: string;
  /** dev users; default `root` (admins → admin) and `dev` (devs → read) */
  users?: DevUser[];
  /**
   * Entries of the clusters file, one YAML flow mapping each, without the leading `- `.
   * `{none}` stands for a kubeconfig path that does not exist (kubeconfig backends are listed
   * without contacting a cluster). Without entries no clusters file is given.
   */
  clusters?: string[];
  /** more server environment */
  env?: Record<string, string>;
}

export interface DevTierApp {
  app: NestExpressApplication;
  dir: string;
  /** A supertest agent signed in (dev login) as `subject`. */
  as: (subject: string) => Promise<ReturnType<typeof request.agent>>;
}

const DEFAULT_USERS: DevUser[] = [
  { subject: 'root', groups: ['admins'] },
  { subject: 'dev', groups: ['devs'] },
];

/**
 * The real server (guard, validation pipe, error filter, audit store) in dev-login mode with the
 * tier mapping `admins → admin, devs → read`, listening on a free loopback port. For HTTP specs;
 * the caller closes `app`.
 */
export async function createDevTierApp(options: DevTierAppOptions): Promise<DevTierApp> {
  const dir = mkdtempSync(join(tmpdir(), options.prefix));
  const users = options.users ?? DEFAULT_USERS;
  writeFileSync(
    join(dir, 'auth.yaml'),
    [
      'authorization:',
      '  mode: tier',
      '  groupTiers: { admins: admin, devs: read }',
      'dev:',
      '  users:',
      ...users.map((u) => `    - { subject: ${u.subject}, groups: [${u.groups.join(', ')}] }`),
      '',
    ].join('\n'),
  );
  const env: Record<string, string> = {
    PERISCOPE_AUTH_MODE: 'dev',
    PERISCOPE_AUTH_FILE: join(dir, 'auth.yaml'),
    PERISCOPE_DATA_DIR: join(dir, 'data'),
    PERISCOPE_LOG_LEVEL: 'error',
  };
  if (options.clusters !== undefined) {
    const none = join(dir, 'none.yaml');
    writeFileSync(
      join(dir, 'clusters.yaml'),
      ['clusters:', ...options.clusters.map((c) => `  - ${c.replaceAll('{none}', none)}`), ''].join('\n'),
    );
    env.PERISCOPE_CLUSTERS_FILE = join(dir, 'clusters.yaml');
  }
  const app = await createServerApp(
    loadServerConfig({ ...env, ...options.env }, (p) => readFileSync(p, 'utf8')),
  );
  await app.listen(0, '127.0.0.1');
  return {
    app,
    dir,
    as: async (subject) => {
      const agent = request.agent(app.getHttpServer());
      await agent.post('/api/auth/dev-login').send({ subject }).expect(204);
      return agent;
    },
  };
}
