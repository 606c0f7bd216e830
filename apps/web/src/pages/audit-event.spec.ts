import { describe, expect, it } from 'vitest';

import type { AuditEvent } from '../types';
import { commandsOf } from './audit-event';

const event = (body: Record<string, unknown>): AuditEvent => ({
  id: 1,
  time: '2030-01-01T00:00:00Z',
  verb: 'cluster_shell_close',
  actor: 'alice',
  cluster: 'local',
  sessionId: 's-1',
  outcome: 'ok',
  body,
});

describe(commandsOf.name, () => {
  it('reads the recorded commands', () => {
    expect(
      commandsOf(
        event({
          commands: [
            {
              argv: ['kubectl', 'get', 'pods'],
              exit_code: 0,
              duration_ms: 120,
              timestamp: '2030-01-01T00:00:01Z',
            },
            { argv: ['helm', 'list'], exit_code: null, duration_ms: null },
          ],
        }),
      ),
    ).toEqual([
      { argv: ['kubectl', 'get', 'pods'], exit_code: 0, duration_ms: 120, timestamp: '2030-01-01T00:00:01Z' },
      { argv: ['helm', 'list'], exit_code: null, duration_ms: null, timestamp: undefined },
    ]);
  });

  it('survives a body written by an operator-controlled shell', () => {
    expect(commandsOf(event({}))).toEqual([]);
    expect(commandsOf(event({ commands: 'kubectl' }))).toEqual([]);
    expect(
      commandsOf(
        event({ commands: [null, 7, { argv: 'rm -rf /', exit_code: '0', duration_ms: {}, timestamp: 5 }] }),
      ),
    ).toEqual([{ argv: [], exit_code: null, duration_ms: null, timestamp: undefined }]);
    expect(commandsOf(event({ commands: [{ argv: ['kubectl', 3, null] }] }))[0]?.argv).toEqual([
      'kubectl',
      '3',
      'null',
    ]);
  });
});
