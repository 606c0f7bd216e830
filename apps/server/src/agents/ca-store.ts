import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

import type { CoreV1Api } from '@kubernetes/client-node';
import { apiStatus } from '@periscope/cluster-ops';

import type { AgentCaStore, CaMaterial } from './agent-ca';
import { parseRecords, type AgentRecords, type AgentRecordStore } from './agent-identities';

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

/**
 * The agents' current certificates in `<dataDir>/agent-ca/agents.json` (one server process owns
 * the data directory). Written to a temporary file and renamed, so a crash never leaves half a file.
 */
export class DirectoryAgentRecords implements AgentRecordStore {
  private readonly file: string;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(dataDir: string) {
    this.file = join(dataDir, 'agent-ca', 'agents.json');
  }

  load(): Promise<AgentRecords> {
    if (!existsSync(this.file)) return Promise.resolve({});
    return Promise.resolve(parseRecords(readFileSync(this.file, 'utf8')));
  }

  update(change: (records: AgentRecords) => AgentRecords): Promise<AgentRecords> {
    // One update at a time in this process: each reads what the previous one wrote.
    const run = this.queue.then(async () => {
      const next = change(await this.load());
      mkdirSync(dirname(this.file), { recursive: true, mode: 0o700 });
      const tmp = `${this.file}.${process.pid}.tmp`;
      writeFileSync(tmp, `${JSON.stringify(next, null, 2)}\n`, { mode: 0o600 });
      renameSync(tmp, this.file);
      return next;
    });
    this.queue = run.catch(() => undefined);
    return run;
  }
}

/**
 * The agents' current certificates in a Secret beside the CA Secret (key `agents.json`), shared
 * by replicas. Updates are compare-and-set on the Secret's resourceVersion, retried on conflict.
 */
export class SecretAgentRecords implements AgentRecordStore {
  constructor(
    private readonly api: CoreV1Api,
    private readonly namespace: string,
    private readonly name: string,
  ) {}

  private async read(): Promise<{ records: AgentRecords; resourceVersion?: string } | undefined> {
    try {
      const s = await this.api.readNamespacedSecret({ name: this.name, namespace: this.namespace });
      const data = s.data?.['agents.json'];
      return {
        records: data === undefined ? {} : parseRecords(Buffer.from(data, 'base64').toString('utf8')),
        ...(s.metadata?.resourceVersion !== undefined ? { resourceVersion: s.metadata.resourceVersion } : {}),
      };
    } catch (err) {
      if (apiStatus(err) === 404) return undefined;
      throw err;
    }
  }

  async load(): Promise<AgentRecords> {
    return (await this.read())?.records ?? {};
  }

  async update(change: (records: AgentRecords) => AgentRecords): Promise<AgentRecords> {
    for (let attempt = 0; attempt < 10; attempt++) {
      const found = await this.read();
      const next = change(found?.records ?? {});
      const body = {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: {
          name: this.name,
          namespace: this.namespace,
          labels: { 'app.kubernetes.io/name': 'periscope', 'app.kubernetes.io/component': 'agent-ca' },
          ...(found?.resourceVersion !== undefined ? { resourceVersion: found.resourceVersion } : {}),
        },
        type: 'Opaque',
        stringData: { 'agents.json': JSON.stringify(next) },
      };
      try {
        if (found === undefined) await this.api.createNamespacedSecret({ namespace: this.namespace, body });
        else await this.api.replaceNamespacedSecret({ name: this.name, namespace: this.namespace, body });
        return next;
      } catch (err) {
        // Another replica wrote first (409 on create or on a stale resourceVersion): read again.
        if (apiStatus(err) !== 409) throw err;
        await new Promise((r) => setTimeout(r, 20 + Math.random() * 80));
      }
    }
    throw new Error(
      `Secret ${this.namespace}/${this.name} kept changing under 10 updates in a row; try again`,
    );
  }
}
