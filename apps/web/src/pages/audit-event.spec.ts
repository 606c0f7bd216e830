import { describe, expect, it } from 'vitest';

import type { AuditEvent } from '../types';
import { commandsOf, reasonOf, refusalOf } from './audit-event';

const event = (body: Record<string, unknown>, verb = 'cluster_shell_close'): AuditEvent => ({
  id: 1,
  time: '2030-01-01T00:00:00Z',
  verb,
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

describe(refusalOf.name, () => {
  it('reads the code, message and unrecorded count of a refused open', () => {
    const e = event({ code: 'E_CAP_USER', reason: 'too many', dropped_before: 4 }, 'exec_denied');
    expect(refusalOf(e)).toEqual({ code: 'E_CAP_USER', reason: 'too many', droppedBefore: 4 });
    expect(reasonOf(e)).toBe('E_CAP_USER');
    expect(refusalOf(event({ code: 5 }, 'cluster_shell_denied'))).toEqual({
      code: 'unknown',
      reason: null,
      droppedBefore: 0,
    });
  });

  it('is null for other verbs, whose reason is the close reason', () => {
    const close = event({ close_reason: 'idle', code: 'E_X' });
    expect(refusalOf(close)).toBeNull();
    expect(reasonOf(close)).toBe('idle');
    expect(reasonOf(event({}, 'cluster_shell_open'))).toBeNull();
  });
});
