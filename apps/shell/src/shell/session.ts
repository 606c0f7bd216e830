import { accessSync, constants, existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

import { runChild, type ChildOutcome } from '../common/child';
import { IMAGE_PATHS } from '../common/paths';

/**
 * Creates the audit file's directory so the first kubectl call can append to it. Audit problems
 * never block the shell: the result is a warning to print, or undefined.
 */
export function prepareAuditDir(auditFile: string): string | undefined {
  try {
    mkdirSync(dirname(auditFile), { recursive: true, mode: 0o700 });
    accessSync(dirname(auditFile), constants.W_OK);
    return undefined;
  } catch (err) {
    return `cannot prepare the audit directory ${dirname(auditFile)}: ${err instanceof Error ? err.message : String(err)}; kubectl and helm calls will not be recorded`;
  }
}

function writable(dir: string | undefined): boolean {
  if (dir === undefined || dir === '') return false;
  try {
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

export interface SessionEnv {
  env: NodeJS.ProcessEnv;
  notes: string[];
}

/**
 * The environment of the operator's bash: the pod's, with KUBECONFIG pinned to the session
 * kubeconfig and a writable HOME (kubectl and helm keep caches there; the image's root file
 * system may be read-only, /tmp never is).
 */
export function sessionEnv(env: NodeJS.ProcessEnv): SessionEnv {
  const notes: string[] = [];
  const out: NodeJS.ProcessEnv = { ...env, KUBECONFIG: IMAGE_PATHS.kubeconfig };
  if (!writable(env['HOME'])) {
    try {
      mkdirSync(IMAGE_PATHS.fallbackHome, { recursive: true, mode: 0o700 });
      out['HOME'] = IMAGE_PATHS.fallbackHome;
    } catch {
      // keep the unwritable HOME; only caches suffer
    }
  }
  if (!existsSync(IMAGE_PATHS.kubeconfig))
    notes.push(`${IMAGE_PATHS.kubeconfig} is missing: kubectl and helm have no credentials in this session`);
  return { env: out, notes };
}

/** Runs `bash --login` on our stdio (the exec's TTY) and resolves with how it ended. */
export function runBash(env: NodeJS.ProcessEnv): Promise<ChildOutcome> {
  return runChild({
    file: IMAGE_PATHS.bash,
    args: ['--login'],
    env,
    // A dropped exec connection hangs up the terminal: we are the session leader, bash may not be
    // in the foreground group, so it must hear about it from us.
    forward: ['SIGTERM', 'SIGHUP', 'SIGUSR1', 'SIGUSR2'],
    fromTerminal: ['SIGINT', 'SIGQUIT'],
  });
}
