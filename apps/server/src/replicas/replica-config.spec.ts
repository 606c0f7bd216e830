import { describe, expect, it } from 'vitest';

import { configForLog, loadServerConfig } from '../config/server-config';

const base = {
  PERISCOPE_AUTH_MODE: 'dev',
  PERISCOPE_AUTH_FILE: '/auth.yaml',
  PERISCOPE_REDIS_URL: 'redis://redis:6379/0',
};
const readFile = (): string => 'dev:\n  users:\n    - { subject: alice, groups: [a] }\n';

function failure(env: Record<string, string>): string {
  try {
    loadServerConfig(env, readFile);
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('the configuration was accepted');
}

describe('replica forwarding configuration', () => {
  it('refuses to start with Redis but without PERISCOPE_REPLICA_SECRET, saying what to set', () => {
    expect(failure(base)).toMatch(
      /PERISCOPE_REPLICA_SECRET: expected a key shared by every replica when PERISCOPE_REDIS_URL is set .*at least 32 characters.*openssl rand -base64 32/,
    );
  });

  it('refuses a short secret without echoing it; a good one is masked in the logged configuration', () => {
    const short = failure({ ...base, PERISCOPE_REPLICA_SECRET: 'short-replica-key' });
    expect(short).toMatch(/PERISCOPE_REPLICA_SECRET/);
    expect(short).not.toContain('short-replica-key');
    const secret = 'an-excellent-replica-secret-0123456789';
    const c = loadServerConfig({ ...base, PERISCOPE_REPLICA_SECRET: secret }, readFile);
    expect(c.sharedState.replicaSecret).toBe(secret);
    expect(c.sharedState.replicaUrl).toBeUndefined();
    expect(JSON.stringify(configForLog(c))).not.toContain(secret);
  });

  it('takes an http:// replica URL (trailing slash dropped) and refuses anything else', () => {
    const env = { ...base, PERISCOPE_REPLICA_SECRET: 's'.repeat(32) };
    expect(
      loadServerConfig({ ...env, PERISCOPE_REPLICA_URL: 'http://10.0.0.7:8080/' }, readFile).sharedState
        .replicaUrl,
    ).toBe('http://10.0.0.7:8080');
    expect(failure({ ...env, PERISCOPE_REPLICA_URL: 'ftp://10.0.0.7' })).toMatch(/PERISCOPE_REPLICA_URL/);
    expect(failure({ ...env, PERISCOPE_REPLICA_URL: 'http://10.0.0.7:8080/api' })).toMatch(
      /PERISCOPE_REPLICA_URL/,
    );
  });

  it('needs no secret without Redis (one replica forwards nothing)', () => {
    const c = loadServerConfig({ PERISCOPE_AUTH_MODE: 'dev', PERISCOPE_AUTH_FILE: '/auth.yaml' }, readFile);
    expect(c.sharedState.replicaSecret).toBeUndefined();
  });
});
