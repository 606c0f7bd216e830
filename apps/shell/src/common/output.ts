import { writeSync } from 'node:fs';

/**
 * Writes straight to a file descriptor. Both programs share their stdio with a child process;
 * `process.stderr` would switch a shared pipe to non-blocking mode under the child's feet.
 */
export function writeFd(fd: 1 | 2, text: string): void {
  try {
    writeSync(fd, text);
  } catch {
    // Nowhere left to report to.
  }
}

export function say(program: string, text: string): void {
  writeFd(2, `${program}: ${text}\n`);
}
