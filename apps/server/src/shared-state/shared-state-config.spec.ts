import { describe, expect, it } from 'vitest';

import { configForLog, loadServerConfig } from '../config/server-config';
import { redactedRedisUrl } from './redis-client';
import { replicaId } from './replica-id';

const base = { PERISCOPE_AUTH_MODE: 'dev', PERISCOPE_AUTH_FILE: '/auth.yaml' };
const readFile = (): string => 'dev:\n  users:\n    - { subject: alice, groups: [a] }\n';

describe('shared-state configuration', () => {
  it('keeps the state in memory without PERISCOPE_REDIS_URL', () => {
    const c = loadServerConfig(base, readFile);
    expect(c.sharedState).toEqual({ keyPrefix: 'periscope:' });
  });

  it('keeps the Redis password apart from the URL, and out of the logged configuration', () => {
    const c = loadServerConfig(
      {
        ...base,
        PERISCOPE_REDIS_URL: 'rediss://periscope:s3cr%40t@redis.example:6380/2',
        PERISCOPE_REDIS_KEY_PREFIX: 'prod:',
        PERISCOPE_REPLICA_ID: 'periscope-7d9f-abcde',
        PERISCOPE_REPLICA_URL: 'http://10.1.2.3:8080/',
        PERISCOPE_REPLICA_SECRET: 'replica-secret-of-at-least-32-chars',
      },
      readFile,
    );
    expect(c.sharedState).toEqual({
      redis: { url: 'rediss://periscope@redis.example:6380/2', password: 's3cr@t' },
      keyPrefix: 'prod:',
      replicaId: 'periscope-7d9f-abcde',
      replicaUrl: 'http://10.1.2.3:8080',
      replicaSecret: 'replica-secret-of-at-least-32-chars',
    });
    const logged = JSON.stringify(configForLog(c));
    expect(logged).not.toContain('s3cr');
    expect(logged).not.toContain('replica-secret-of');
    expect(logged).toContain('rediss://periscope@redis.example:6380/2');
  });

  it('refuses a URL that is not redis:// or rediss:// without echoing it', () => {
    expect(() =>
      loadServerConfig({ ...base, PERISCOPE_REDIS_URL: 'http://:pw-x@redis:6379' }, readFile),
    ).toThrow(/PERISCOPE_REDIS_URL/);
    try {
      loadServerConfig({ ...base, PERISCOPE_REDIS_URL: 'http://:pw-x@redis:6379' }, readFile);
    } catch (err) {
      expect((err as Error).message).not.toContain('pw-x');
    }
  });

  it('redacts a password from any URL it shows', () => {
    expect(redactedRedisUrl('redis://:hunter2@127.0.0.1:6379/0')).toBe('redis://127.0.0.1:6379/0');
    expect(redactedRedisUrl('not a url')).not.toContain('not a url');
  });

  it('names the replica as configured, or after the host with a random suffix', () => {
    expect(replicaId('periscope-0')).toBe('periscope-0');
    const a = replicaId(undefined);
    const b = replicaId(undefined);
    expect(a).toMatch(/^[A-Za-z0-9._-]+-[0-9a-f]{8}$/);
    expect(a).not.toBe(b);
  });
});
