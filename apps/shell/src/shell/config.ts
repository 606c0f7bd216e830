import { isAbsolute } from 'node:path';

import { IMAGE_PATHS } from '../common/paths';

/**
 * Shell modes this image runs (the server offers the same list): `bash`, or `kubectl`, the
 * restricted prompt that runs only kubectl and helm commands (apps/shell/src/kubectl-mode).
 */
export const SHELL_MODES = ['bash', 'kubectl'] as const;
export type ShellMode = (typeof SHELL_MODES)[number];

export interface ShellConfig {
  sessionId: string;
  mode: ShellMode;
  auditFile: string;
}

/** Every problem with the environment, in one message. */
export class ShellConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(problems.join('\n'));
    this.name = 'ShellConfigError';
  }
}

const SESSION_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

function isShellMode(value: string): value is ShellMode {
  return (SHELL_MODES as readonly string[]).includes(value);
}

/**
 * periscope-shell's only reads of the environment. The session pod sets all three variables; an
 * unset mode means bash (the server's default) and an unset audit file means the pod spec's path.
 */
export function shellConfigFrom(env: NodeJS.ProcessEnv): ShellConfig {
  const problems: string[] = [];
  const sessionId = env['PERISCOPE_SHELL_SESSION_ID'] ?? '';
  if (sessionId === '')
    problems.push(
      'PERISCOPE_SHELL_SESSION_ID is not set: this program runs in a Periscope session pod, which sets it',
    );
  else if (!SESSION_ID.test(sessionId))
    problems.push(
      `PERISCOPE_SHELL_SESSION_ID ${JSON.stringify(sessionId)} is not a session id (letters, digits, ".", "_", "-"; at most 128)`,
    );

  const rawMode = env['PERISCOPE_SHELL_MODE'] ?? '';
  const mode = rawMode === '' ? 'bash' : rawMode;
  if (!isShellMode(mode)) {
    problems.push(
      `PERISCOPE_SHELL_MODE ${JSON.stringify(mode)} is not supported (supported: ${SHELL_MODES.join(', ')})`,
    );
  }

  const rawAudit = env['PERISCOPE_SHELL_AUDIT_FILE'] ?? '';
  const auditFile = rawAudit === '' ? IMAGE_PATHS.defaultAuditFile : rawAudit;
  if (!isAbsolute(auditFile) || auditFile.endsWith('/'))
    problems.push(`PERISCOPE_SHELL_AUDIT_FILE ${JSON.stringify(auditFile)} must be an absolute file path`);

  if (problems.length > 0 || !isShellMode(mode)) throw new ShellConfigError(problems);
  return { sessionId, mode, auditFile };
}
