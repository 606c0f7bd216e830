import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  openSync,
  readlinkSync,
  readSync,
  realpathSync,
} from 'node:fs';
import { dirname, isAbsolute, normalize } from 'node:path';

/**
 * Exit codes of `periscope-shell read-audit` (sysexits.h). The server's teardown reads them:
 * 0 the bytes are on stdout, 66 there is no command log, 65 the path was refused.
 */
export const READ_AUDIT_EXIT = { ok: 0, usage: 64, refused: 65, missing: 66 } as const;

/** The most a teardown may ask for (the server's `transcriptMaxBytes` is at most 8 MiB, plus one). */
export const READ_AUDIT_MAX_BYTES = 64 * 1024 * 1024;

export type ReadAuditResult =
  | { code: typeof READ_AUDIT_EXIT.ok; bytes: Buffer }
  | { code: Exclude<(typeof READ_AUDIT_EXIT)[keyof typeof READ_AUDIT_EXIT], 0>; message: string };

function kindOf(mode: number): string {
  switch (mode & constants.S_IFMT) {
    case constants.S_IFIFO:
      return 'a FIFO';
    case constants.S_IFDIR:
      return 'a directory';
    case constants.S_IFSOCK:
      return 'a socket';
    case constants.S_IFCHR:
      return 'a character device';
    case constants.S_IFBLK:
      return 'a block device';
    case constants.S_IFLNK:
      return 'a symbolic link';
    default:
      return 'not a regular file';
  }
}

/**
 * The file the descriptor really is must be `path` itself, not something reached through a
 * symlinked directory on the way: /proc/self/fd tells; without /proc, the directory must resolve
 * to itself and the path must still name the opened file.
 */
function sameFile(fd: number, path: string, procDir: string): boolean {
  try {
    return readlinkSync(`${procDir}/self/fd/${fd}`) === path;
  } catch {
    try {
      const opened = fstatSync(fd);
      const named = lstatSync(path);
      return (
        realpathSync(dirname(path)) === dirname(path) &&
        named.isFile() &&
        named.ino === opened.ino &&
        named.dev === opened.dev
      );
    } catch {
      return false;
    }
  }
}

/**
 * Reads at most `maxBytes` of the in-pod command log for the teardown, and cannot be made to
 * block or to read anything else: the file is opened with O_NOFOLLOW (a symlink is refused) and
 * O_NONBLOCK (a FIFO, a socket or a device never stalls the open or a read), then it must be a
 * regular file that is `path` itself. The operator owns /tmp, so every one of those tricks is
 * within reach from the shell.
 */
export function readAudit(path: string, maxBytes: number, opts: { procDir?: string } = {}): ReadAuditResult {
  if (!isAbsolute(path) || normalize(path) !== path || path.endsWith('/'))
    return {
      code: READ_AUDIT_EXIT.usage,
      message: `${JSON.stringify(path)} is not a normalized absolute path`,
    };
  if (!Number.isInteger(maxBytes) || maxBytes < 1 || maxBytes > READ_AUDIT_MAX_BYTES)
    return {
      code: READ_AUDIT_EXIT.usage,
      message: `max-bytes must be a whole number from 1 to ${READ_AUDIT_MAX_BYTES}`,
    };
  let fd: number;
  try {
    fd = openSync(
      path,
      constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY,
    );
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { code: READ_AUDIT_EXIT.missing, message: `no command log at ${path}` };
    if (code === 'ELOOP')
      return { code: READ_AUDIT_EXIT.refused, message: `refusing ${path}: it is a symbolic link` };
    if (code === 'ENXIO')
      return { code: READ_AUDIT_EXIT.refused, message: `refusing ${path}: it is a socket or a device` };
    return { code: READ_AUDIT_EXIT.refused, message: `cannot open ${path}: ${(err as Error).message}` };
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile())
      return { code: READ_AUDIT_EXIT.refused, message: `refusing ${path}: it is ${kindOf(st.mode)}` };
    if (!sameFile(fd, path, opts.procDir ?? '/proc'))
      return {
        code: READ_AUDIT_EXIT.refused,
        message: `refusing ${path}: it is reached through a symbolic link or was replaced while opening`,
      };
    // Sized by the file (it may still grow a little while we read), never beyond the cap.
    const buf = Buffer.allocUnsafe(Math.min(maxBytes, st.size + 64 * 1024));
    let got = 0;
    while (got < buf.length) {
      const n = readSync(fd, buf, got, buf.length - got, null);
      if (n === 0) break;
      got += n;
    }
    return { code: READ_AUDIT_EXIT.ok, bytes: buf.subarray(0, got) };
  } catch (err) {
    return { code: READ_AUDIT_EXIT.refused, message: `cannot read ${path}: ${(err as Error).message}` };
  } finally {
    closeSync(fd);
  }
}
