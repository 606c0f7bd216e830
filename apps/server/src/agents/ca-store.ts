import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import type { CoreV1Api } from '@kubernetes/client-node';
import { apiStatus } from '@periscope/cluster-ops';

import type { AgentCaStore, CaMaterial } from './agent-ca';

/** Keeps the agent CA in `<dataDir>/agent-ca/` (key mode 0600). Creation never overwrites. */
export class DirectoryCaStore implements AgentCaStore {
  private readonly dir: string;

  constructor(dataDir: string) {
    this.dir = join(dataDir, 'agent-ca');
  }

  load(): Promise<CaMaterial | undefined> {
    const cert = join(this.dir, 'ca.crt');
    const key = join(this.dir, 'ca.key');
    if (!existsSync(cert) || !existsSync(key)) return Promise.resolve(undefined);
    return Promise.resolve({ certPem: readFileSync(cert, 'utf8'), keyPem: readFileSync(key, 'utf8') });
  }

  async saveIfAbsent(material: CaMaterial): Promise<CaMaterial> {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    try {
      // 'wx' fails if another process created the key first; then theirs wins.
      writeFileSync(join(this.dir, 'ca.key'), material.keyPem, { mode: 0o600, flag: 'wx' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        for (let i = 0; i < 50; i++) {
          const existing = await this.load();
          if (existing) return existing;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
      throw err;
    }
    writeFileSync(join(this.dir, 'ca.crt'), material.certPem, { mode: 0o644 });
    return material;
  }
}

/** Keeps the agent CA in a Kubernetes Secret (keys `ca.crt`, `ca.key`), shared by replicas. */
export class SecretCaStore implements AgentCaStore {
  constructor(
    private readonly api: CoreV1Api,
    private readonly namespace: string,
    private readonly name: string,
  ) {}

  async load(): Promise<CaMaterial | undefined> {
    try {
      const s = await this.api.readNamespacedSecret({ name: this.name, namespace: this.namespace });
      const crt = s.data?.['ca.crt'];
      const key = s.data?.['ca.key'];
      if (crt === undefined || key === undefined) {
        throw new Error(
          `Secret ${this.namespace}/${this.name} lacks ca.crt or ca.key; delete it to let the server create a new CA`,
        );
      }
      return {
        certPem: Buffer.from(crt, 'base64').toString('utf8'),
        keyPem: Buffer.from(key, 'base64').toString('utf8'),
      };
    } catch (err) {
      if (apiStatus(err) === 404) return undefined;
      throw err;
    }
  }

  async saveIfAbsent(material: CaMaterial): Promise<CaMaterial> {
    try {
      await this.api.createNamespacedSecret({
        namespace: this.namespace,
        body: {
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: {
            name: this.name,
            namespace: this.namespace,
            labels: { 'app.kubernetes.io/name': 'periscope', 'app.kubernetes.io/component': 'agent-ca' },
          },
          type: 'Opaque',
          stringData: { 'ca.crt': material.certPem, 'ca.key': material.keyPem },
        },
      });
      return material;
    } catch (err) {
      // Another replica created it first: use theirs.
      if (apiStatus(err) !== 409) throw err;
      const existing = await this.load();
      if (!existing) throw err;
      return existing;
    }
  }
}
