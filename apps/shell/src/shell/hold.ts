import { writeFd } from '../common/output';
import type { ShellConfig } from './config';

/**
 * The container's main process: nothing runs in it, it only keeps the pod alive so sessions and
 * the teardown can `exec` into it. Resolves with exit code 0 on SIGTERM or SIGINT.
 */
export function hold(config: ShellConfig): Promise<number> {
  const stopped = new Promise<number>((resolve) => {
    const keepAlive = setInterval(() => undefined, 1 << 30);
    const stop = (): void => {
      clearInterval(keepAlive);
      resolve(0);
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  writeFd(
    1,
    `periscope-shell: session ${config.sessionId} ready (mode ${config.mode}); waiting for SIGTERM\n`,
  );
  return stopped;
}
