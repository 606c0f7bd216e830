import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/** What is known about a call before it runs. */
export interface AuditStart {
  timestamp: string;
  pid: number;
  argv: readonly string[];
}

/**
 * Width reserved at the end of each line for `"exit_code":…,"duration_ms":…`. The line is written
 * before the tool runs with both values null and padded with spaces (valid JSON whitespace); when
 * the tool ends, the same bytes are overwritten in place. So there is exactly one line per call,
 * and a call that never ended (pod deleted mid-`kubectl get -w`) is still on record.
 */
export const RESULT_WIDTH = 48;

function resultFields(exitCode: number | null, durationMs: number | null): string {
  const code = exitCode === null ? 'null' : String(exitCode);
  const duration = durationMs === null ? 'null' : String(durationMs);
  return `"exit_code":${code},"duration_ms":${duration}`.padEnd(RESULT_WIDTH, ' ');
}

/** The line written before the call, results null: `{"timestamp":…,"pid":…,"argv":[…],"exit_code":null,…}`. */
export function startLine(start: AuditStart): string {
  const head = JSON.stringify({ timestamp: start.timestamp, pid: start.pid, argv: start.argv });
  return `${head.slice(0, -1)},${resultFields(null, null)}}\n`;
}

/** The same line once the call ended; byte length equal to {@link startLine}'s. */
export function finishedLine(start: AuditStart, exitCode: number, durationMs: number): string {
  const head = JSON.stringify({ timestamp: start.timestamp, pid: start.pid, argv: start.argv });
  return `${head.slice(0, -1)},${resultFields(exitCode, durationMs)}}\n`;
}

export interface AuditLogOptions {
  /** The audit file; undefined disables auditing. */
  file: string | undefined;
  /** Receives at most one message per AuditLog: audit problems never block the command. */
  warn: (message: string) => void;
  /** Where /proc is (tests point it at a missing directory to exercise the fallback). */
  procDir?: string;
}

/** Appends one JSON line per call to the in-pod audit file and completes it when the call ends. */
export class AuditLog {
  private warned = false;
  private written: { start: AuditStart; line: Buffer; offset: number | undefined } | undefined;

  constructor(private readonly opts: AuditLogOptions) {}

  /** Writes the call's line. Never throws. */
  start(start: AuditStart): void {
    const file = this.opts.file;
    if (file === undefined) return;
    const line = Buffer.from(startLine(start));
    let fd: number | undefined;
    try {
      mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
      fd = openSync(file, 'a+', 0o600);
      // One write(2) of a small buffer with O_APPEND: concurrent calls (a pipeline of kubectl
      // and helm) never interleave inside a line.
      const n = writeSync(fd, line);
      if (n !== line.length) throw new Error(`short write (${n} of ${line.length} bytes)`);
      this.written = { start, line, offset: this.locate(fd, line) };
    } catch (err) {
      this.warnOnce(`cannot write the audit record to ${file}: ${describe(err)}`);
    } finally {
      if (fd !== undefined) closeQuietly(fd);
    }
  }

  /** Fills in exit code and duration on the call's line. Never throws. */
  finish(exitCode: number, durationMs: number): void {
    const file = this.opts.file;
    const written = this.written;
    if (file === undefined || written === undefined) return;
    this.written = undefined;
    if (written.offset === undefined) {
      this.warnOnce(`cannot record the exit code in ${file}: the call's line could not be located`);
      return;
    }
    const done = Buffer.from(finishedLine(written.start, exitCode, durationMs));
    let fd: number | undefined;
    try {
      // Not O_APPEND: on Linux a positioned write to an O_APPEND descriptor still appends.
      fd = openSync(file, 'r+');
      if (!sameBytes(fd, written.offset, written.line))
        throw new Error('the file changed under us (truncated or replaced)');
      const n = writeSync(fd, done, 0, done.length, written.offset);
      if (n !== done.length) throw new Error(`short write (${n} of ${done.length} bytes)`);
    } catch (err) {
      this.warnOnce(`cannot record the exit code in ${file}: ${describe(err)}`);
    } finally {
      if (fd !== undefined) closeQuietly(fd);
    }
  }

  /**
   * Byte offset of the line just appended through `fd`. After an O_APPEND write the descriptor's
   * position is the end of what it wrote, whatever other writers did meanwhile; Linux shows that
   * position in /proc/self/fdinfo. Without /proc, the end of the file is used when it still holds
   * our line (no writer came in between).
   */
  private locate(fd: number, line: Buffer): number | undefined {
    let end: number | undefined;
    try {
      const info = readFileSync(`${this.opts.procDir ?? '/proc'}/self/fdinfo/${fd}`, 'utf8');
      const pos = /^pos:\s*(\d+)$/m.exec(info)?.[1];
      if (pos !== undefined) end = Number(pos);
    } catch {
      // no /proc: fall back to the file size
    }
    end ??= fstatSync(fd).size;
    const offset = end - line.length;
    return offset >= 0 && sameBytes(fd, offset, line) ? offset : undefined;
  }

  private warnOnce(message: string): void {
    if (this.warned) return;
    this.warned = true;
    this.opts.warn(message);
  }
}

function sameBytes(fd: number, offset: number, expected: Buffer): boolean {
  const actual = Buffer.alloc(expected.length);
  let got = 0;
  while (got < actual.length) {
    const n = readSync(fd, actual, got, actual.length - got, offset + got);
    if (n === 0) break;
    got += n;
  }
  return got === expected.length && actual.equals(expected);
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // nothing to do
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
