import { describe, expect, it } from 'vitest';

import { ShellConfigError, shellConfigFrom } from './config';

const ID = '0b9c7c52-8f3e-4d8f-9a8e-2f1f6f0c1a11';

function problems(env: NodeJS.ProcessEnv): readonly string[] {
  try {
    shellConfigFrom(env);
  } catch (err) {
    if (err instanceof ShellConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe(shellConfigFrom.name, () => {
  it('reads the three variables of the session pod', () => {
    expect(
      shellConfigFrom({
        PERISCOPE_SHELL_SESSION_ID: ID,
        PERISCOPE_SHELL_MODE: 'bash',
        PERISCOPE_SHELL_AUDIT_FILE: '/tmp/x/audit.jsonl',
      }),
    ).toEqual({ sessionId: ID, mode: 'bash', auditFile: '/tmp/x/audit.jsonl' });
  });

  it('defaults the mode to bash and the audit file to the pod spec path', () => {
    expect(shellConfigFrom({ PERISCOPE_SHELL_SESSION_ID: ID })).toEqual({
      sessionId: ID,
      mode: 'bash',
      auditFile: '/tmp/periscope-shell/audit.jsonl',
    });
  });

  it('refuses a missing or malformed session id', () => {
    expect(problems({})).toEqual([
      'PERISCOPE_SHELL_SESSION_ID is not set: this program runs in a Periscope session pod, which sets it',
    ]);
    expect(problems({ PERISCOPE_SHELL_SESSION_ID: '../../etc' })[0]).toMatch(/is not a session id/);
  });

  it('accepts bash and kubectl and refuses anything else as unsupported', () => {
    expect(shellConfigFrom({ PERISCOPE_SHELL_SESSION_ID: ID, PERISCOPE_SHELL_MODE: 'kubectl' }).mode).toBe(
      'kubectl',
    );
    expect(problems({ PERISCOPE_SHELL_SESSION_ID: ID, PERISCOPE_SHELL_MODE: 'kubectl-only' })).toEqual([
      'PERISCOPE_SHELL_MODE "kubectl-only" is not supported (supported: bash, kubectl)',
    ]);
    expect(problems({ PERISCOPE_SHELL_SESSION_ID: ID, PERISCOPE_SHELL_MODE: 'zsh' })).toEqual([
      'PERISCOPE_SHELL_MODE "zsh" is not supported (supported: bash, kubectl)',
    ]);
  });

  it('lists every problem at once', () => {
    expect(problems({ PERISCOPE_SHELL_MODE: 'zsh', PERISCOPE_SHELL_AUDIT_FILE: 'audit.jsonl' })).toHaveLength(
      3,
    );
  });
});
