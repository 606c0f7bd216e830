/**
 * periscope-shell: `periscope-shell hold` is the session pod's main process; `periscope-shell`
 * (exec'd with a TTY) is the operator's session: bash --login with the session kubeconfig, or in
 * mode kubectl the restricted kubectl/helm prompt (../kubectl-mode);
 * `periscope-shell read-audit` is the teardown's bounded read of the command log.
 * See docs/shell-image.md.
 */
import { writeSync } from 'node:fs';

import { exitLike } from '../common/child';
import { say, writeFd } from '../common/output';
import { IMAGE_PATHS } from '../common/paths';
import { childEnv, toolDirFrom } from '../kubectl-mode/env';
import { runKubectlMode } from '../kubectl-mode/prompt';
import { ShellConfigError, shellConfigFrom, type ShellConfig } from './config';
import { hold } from './hold';
import { READ_AUDIT_EXIT, readAudit } from './read-audit';
import { prepareAuditDir, runBash, sessionEnv } from './session';

const PROGRAM = 'periscope-shell';
const USAGE = `usage: periscope-shell          run the operator's session: bash --login, or the kubectl-only
                                prompt when PERISCOPE_SHELL_MODE=kubectl
       periscope-shell hold     keep the session pod running until SIGTERM (its main process)
       periscope-shell read-audit <path> <max-bytes>
                                print at most max-bytes of the command log (a regular file only)
environment: PERISCOPE_SHELL_SESSION_ID (required), PERISCOPE_SHELL_MODE (bash | kubectl),
             PERISCOPE_SHELL_AUDIT_FILE (/tmp/periscope-shell/audit.jsonl)
`;

/** Exit codes of refusals (sysexits.h), distinct from anything bash returns for the session. */
const EX_USAGE = 64;
const EX_CONFIG = 78;

async function main(args: readonly string[]): Promise<void> {
  const command = args[0];
  if (command === '--help' || command === '-h') {
    writeFd(1, USAGE);
    process.exit(0);
  }
  if (command === 'read-audit') {
    // The teardown's read: needs no session environment and creates nothing.
    process.exit(readAuditCommand(args.slice(1)));
  }
  if (args.length > 1 || (command !== undefined && command !== 'hold')) {
    writeFd(2, USAGE);
    process.exit(EX_USAGE);
  }

  let config: ShellConfig;
  try {
    config = shellConfigFrom(process.env);
  } catch (err) {
    if (!(err instanceof ShellConfigError)) throw err;
    for (const problem of err.problems) say(PROGRAM, problem);
    process.exit(EX_CONFIG);
  }

  const warning = prepareAuditDir(config.auditFile);
  if (warning !== undefined) say(PROGRAM, `warning: ${warning}`);

  if (command === 'hold') {
    process.exit(await hold(config));
  }
  const { env, notes } = sessionEnv(process.env);
  for (const note of notes) say(PROGRAM, `warning: ${note}`);
  if (config.mode === 'kubectl') {
    const toolDir = toolDirFrom(process.env);
    const shellNamespace = process.env['PERISCOPE_SHELL_NAMESPACE'];
    process.exit(
      await runKubectlMode({
        sessionId: config.sessionId,
        env: childEnv(config, process.env, env['HOME'] ?? IMAGE_PATHS.fallbackHome, toolDir),
        toolDir,
        rules: shellNamespace !== undefined && shellNamespace !== '' ? { shellNamespace } : {},
      }),
    );
  }
  exitLike(await runBash(env));
}

/** Writes all of `bytes` to stdout (a pipe the exec reads), waiting out a full non-blocking pipe. */
function writeAll(bytes: Buffer): void {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  let off = 0;
  while (off < bytes.length) {
    try {
      off += writeSync(1, bytes, off, bytes.length - off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      Atomics.wait(pause, 0, 0, 5);
    }
  }
}

function readAuditCommand(args: readonly string[]): number {
  const [path, max] = args;
  if (args.length !== 2 || path === undefined || max === undefined || !/^\d{1,9}$/.test(max)) {
    writeFd(2, USAGE);
    return EX_USAGE;
  }
  const r = readAudit(path, Number(max));
  if (r.code !== READ_AUDIT_EXIT.ok) {
    say(PROGRAM, `read-audit: ${r.message}`);
    return r.code;
  }
  writeAll(r.bytes);
  return 0;
}

main(process.argv.slice(2)).catch((err: unknown) => {
  say(PROGRAM, `failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exit(1);
});
