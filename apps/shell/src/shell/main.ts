/**
 * periscope-shell: `periscope-shell hold` is the session pod's main process; `periscope-shell`
 * (exec'd with a TTY) is the operator's session: bash --login with the session kubeconfig.
 * See docs/shell-image.md.
 */
import { exitLike } from '../common/child';
import { say, writeFd } from '../common/output';
import { ShellConfigError, shellConfigFrom, type ShellConfig } from './config';
import { hold } from './hold';
import { prepareAuditDir, runBash, sessionEnv } from './session';

const PROGRAM = 'periscope-shell';
const USAGE = `usage: periscope-shell          run the operator's bash --login for this session
       periscope-shell hold     keep the session pod running until SIGTERM (its main process)
environment: PERISCOPE_SHELL_SESSION_ID (required), PERISCOPE_SHELL_MODE (bash),
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
  exitLike(await runBash(env));
}

main(process.argv.slice(2)).catch((err: unknown) => {
  say(PROGRAM, `failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exit(1);
});
