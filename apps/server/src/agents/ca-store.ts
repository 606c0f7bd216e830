import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

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
