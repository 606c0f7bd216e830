import { basename } from 'node:path';
import { performance } from 'node:perf_hooks';

import { runChild, type ChildOutcome } from '../common/child';
import { say } from '../common/output';
import { AUDITED_TOOLS, isAuditedTool, realBinaryPath } from './allow-list';
import { AuditLog } from './audit-log';
import type { AuditExecConfig } from './config';

export const PROGRAM = 'periscope-audit-exec';

export type AuditExecOutcome = ChildOutcome | { kind: 'refused'; code: 127; signal: null };

export interface AuditExecOptions {
  /** `process.argv`: the runtime, the path this program was called by (the symlink), the arguments. */
  argv: readonly string[];
  env: NodeJS.ProcessEnv;
  config: AuditExecConfig;
  /** Tests narrow or widen it; production uses {@link AUDITED_TOOLS}. */
  allowList?: readonly string[];
}

/**
 * Picks the real binary from the name this program was called by, records the call in the audit
 * file, runs the binary with the same arguments, stdio and argv[0], and records how it ended.
 */
export async function runAuditExec(opts: AuditExecOptions): Promise<AuditExecOutcome> {
  const allowList = opts.allowList ?? AUDITED_TOOLS;
  const name = basename(opts.argv[1] ?? '');
  const args = opts.argv.slice(2);
  if (!isAuditedTool(name, allowList)) {
    say(
      PROGRAM,
      `${JSON.stringify(name)} is not an audited tool (allowed: ${allowList.join(', ')}); ` +
        'call it through its symlink, e.g. /usr/local/bin/kubectl',
    );
    return { kind: 'refused', code: 127, signal: null };
  }

  const real = realBinaryPath(opts.config.realBinDir, name);
  const audit = new AuditLog({
    file: opts.config.auditFile,
    warn: (message) => {
      say(PROGRAM, `warning: ${message} (the command runs anyway)`);
    },
  });
  audit.start({ timestamp: new Date().toISOString(), pid: process.pid, argv: [name, ...args] });
  const started = performance.now();
  const outcome = await runChild({
    file: real,
    args,
    argv0: name,
    env: opts.env,
    forward: ['SIGTERM', 'SIGUSR1', 'SIGUSR2'],
    fromTerminal: ['SIGINT', 'SIGQUIT', 'SIGHUP'],
  });
  if (outcome.kind === 'not-started') say(PROGRAM, `cannot run ${real}: ${outcome.error.message}`);
  audit.finish(outcome.code, Math.round(performance.now() - started));
  return outcome;
}
