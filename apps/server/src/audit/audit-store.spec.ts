import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { AuditStore } from './audit-store';

describe(AuditStore.name, () => {
  it('keeps events durably across reopen and closes sessions a server stop left open', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'audit-')), 'audit.db');
    const a = new AuditStore(path);
    a.write({
      verb: 'cluster_shell_open',
      actor: 'alice',
      cluster: 'c',
      sessionId: 's1',
      body: { cluster: 'c', mode: 'bash', tier: 'admin', session_id: 's1' },
    });
    a.write({
      verb: 'cluster_shell_open',
      actor: 'bob',
      cluster: 'c',
      sessionId: 's2',
      body: { session_id: 's2' },
    });
    a.write({
      verb: 'cluster_shell_close',
      actor: 'bob',
      cluster: 'c',
      sessionId: 's2',
      body: { close_reason: 'exit' },
    });
    a.close(); // the server stops with s1 open

    const b = new AuditStore(path);
    expect(b.closeOrphans('cluster_shell_open', 'cluster_shell_close')).toEqual(['s1']);
    expect(b.closeOrphans('cluster_shell_open', 'cluster_shell_close')).toEqual([]);
    const s1 = b.bySession('s1');
    expect(s1.map((e) => e.verb)).toEqual(['cluster_shell_open', 'cluster_shell_close']);
    expect(s1[1]!.body).toMatchObject({ close_reason: 'server_restart', tier: 'admin', commands: [] });
    expect(b.bySession('s2')).toHaveLength(2);
    b.close();
  });
});
