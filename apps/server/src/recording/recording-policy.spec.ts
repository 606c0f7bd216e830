import { mkdtempSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { parseClustersFile } from '../config/clusters-file';
import { loadServerConfig, type ServerConfig } from '../config/server-config';
import { FileRecordingStore } from './recording-store';
import { recordingModeFor, RecordingService } from './recording.service';

const AUTH =
  'authorization:\n  mode: tier\n  groupTiers: { admins: admin }\ndev:\n  users:\n    - { subject: a@example.com, groups: [admins] }\n';

function config(env: Record<string, string>, clusters: string): ServerConfig {
  const map: Record<string, string> = { '/auth.yaml': AUTH, '/clusters.yaml': clusters };
  return loadServerConfig(
    {
      PERISCOPE_AUTH_MODE: 'dev',
      PERISCOPE_AUTH_FILE: '/auth.yaml',
      PERISCOPE_CLUSTERS_FILE: '/clusters.yaml',
      ...env,
    },
    (p) => {
      const t = map[p];
      if (t === undefined) throw Object.assign(new Error('missing'), { code: 'ENOENT' });
      return t;
    },
  );
}

const CLUSTERS = [
  'clusters:',
  '  - { name: a, backend: in-cluster }',
  "  - { name: b, backend: in-cluster, clusterShell: { recording: 'off' }, exec: { recording: output+input } }",
].join('\n');

describe('recording policy', () => {
  it('defaults to output; the server setting and each cluster override it per kind', () => {
    const c = config({}, CLUSTERS);
    expect(c.recording).toEqual({
      mode: 'output',
      maxSessionBytes: 128 * 1024 * 1024,
      maxTotalBytes: 512 * 1024 * 1024,
    });
    expect(recordingModeFor(c, 'a', 'cluster_shell')).toBe('output');
    expect(recordingModeFor(c, 'b', 'cluster_shell')).toBe('off');
    expect(recordingModeFor(c, 'b', 'pod_exec')).toBe('output+input');
    const off = config({ PERISCOPE_SESSION_RECORDING: 'off' }, CLUSTERS);
    expect(recordingModeFor(off, 'a', 'pod_exec')).toBe('off');
    expect(recordingModeFor(off, 'b', 'pod_exec')).toBe('output+input');
  });

  it('refuses an unknown mode with the path and the allowed values', () => {
    const { problems } = parseClustersFile(
      'clusters:\n  - { name: a, backend: in-cluster, exec: { recording: all } }\n',
      'clusters.yaml',
    );
    expect(problems).toContainEqual(
      expect.objectContaining({ setting: expect.stringContaining('exec.recording') as unknown }),
    );
    expect(JSON.stringify(problems)).toContain('off, output, output+input');
    expect(() => config({ PERISCOPE_SESSION_RECORDING: 'everything' }, CLUSTERS)).toThrow(
      /PERISCOPE_SESSION_RECORDING/,
    );
  });
});

describe('recording retention', () => {
  const id = (n: number): string => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

  it('deletes recordings past the audit retention, then the oldest over the size bound, never a live one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'periscope-rec-retention-'));
    const store = new FileRecordingStore(dir);
    const now = Date.now();
    const day = 86_400_000;
    // 1: 400 days old; 2..5: 4 KiB each, older first; 5 is live
    for (const [n, ageMs] of [
      [1, 400 * day],
      [2, 4 * day],
      [3, 3 * day],
      [4, 2 * day],
      [5, 5 * day],
    ] as const) {
      const p = join(dir, `${id(n)}.cast`);
      writeFileSync(p, Buffer.alloc(4096, 'x'));
      utimesSync(p, (now - ageMs) / 1000, (now - ageMs) / 1000);
    }
    writeFileSync(join(dir, 'not-a-recording.txt'), 'kept');
    const cfg = {
      audit: { retentionDays: 365, maxBytes: 1 },
      recording: { mode: 'output', maxSessionBytes: 1, maxTotalBytes: 10_000 },
    } as unknown as ServerConfig;
    const sessions = { ids: () => [id(5)], onAdded: () => undefined, get: () => undefined };
    const log = { info: () => undefined, error: () => undefined };
    const service = new RecordingService(
      cfg,
      store,
      sessions as never,
      {} as never,
      { also: () => undefined } as never,
      log as never,
    );
    const r = await service.prune(now);
    expect(r).toEqual({ deletedByAge: 1, deletedBySize: 1, bytes: 8192 });
    expect((await store.list()).map((x) => x.id).sort()).toEqual([id(3), id(4), id(5)]);
  });
});
