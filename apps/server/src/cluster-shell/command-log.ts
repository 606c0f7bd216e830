import { redactArgv } from './argv-redaction';

/**
 * The command list of a `cluster_shell_close`, read from the in-pod audit file. That file lives in
 * the operator's own shell, so the operator can delete, forge or pad its lines: the list is
 * recorded as operator-supplied, every line is validated, values that carry secrets are redacted,
 * and the whole is capped so one close cannot crowd others out of the audit store. The server's
 * own byte counts and the cluster's audit log (joined by the session-id extra) are the records the
 * operator cannot write.
 */

/** Caps on what one close may store. */
export const COMMAND_LOG_LIMITS = {
  /** entries kept per close */
  maxEntries: 500,
  /** bytes of the stored list (JSON), about what 500 ordinary commands take */
  maxBytes: 64 * 1024,
  /** bytes of one stored entry (JSON); longer ones lose trailing arguments */
  maxEntryBytes: 4 * 1024,
  /** arguments kept per entry */
  maxArgs: 128,
  /** characters kept per argument */
  maxArgChars: 1024,
  /** entries may be this far outside the session's time (the pod's clock is not ours) */
  clockSkewMs: 10 * 60_000,
} as const;

export type CommandLogLimits = typeof COMMAND_LOG_LIMITS;

/** The tools whose calls the shell image records (apps/shell audit-exec). */
export const RECORDED_TOOLS: readonly string[] = ['kubectl', 'helm'];

export interface CommandEntry {
  timestamp: string;
  argv: string[];
  pid: number;
  exit_code: number | null;
  duration_ms: number | null;
  /** some values were replaced by `***` */
  argv_redacted?: true;
  /** long arguments were cut or trailing arguments left out */
  argv_truncated?: true;
}

export interface CommandLog {
  commands: CommandEntry[];
  /** lines that are not a valid entry: bad JSON, wrong shape or tool, time outside the session */
  skipped: number;
  /** valid entries left out because the count or byte cap was reached */
  dropped: number;
  /** entries with redacted values */
  redacted: number;
  /** the file was longer than the read cap, or entries were dropped */
  truncated: boolean;
}

export const EMPTY_COMMAND_LOG: CommandLog = {
  commands: [],
  skipped: 0,
  dropped: 0,
  redacted: 0,
  truncated: false,
};

export interface ParseOptions {
  /** the read stopped at its byte cap (the last line may be cut) */
  fileTruncated: boolean;
  /** the session's time span in epoch ms; entries outside it (plus clock skew) are skipped */
  window?: { from: number; to: number };
  limits?: CommandLogLimits;
}

/** As `Date#toISOString` writes it (the shell's recorder uses it). */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;
const MAX_PID = 2 ** 31 - 1;

const isRecord = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

/** One line as recorded, validated; undefined when it is not a valid entry. */
function validEntry(line: string, window: ParseOptions['window'], skewMs: number): CommandEntry | undefined {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (!isRecord(v)) return undefined;
  const { timestamp, argv, pid } = v;
  const exitCode = v['exit_code'] ?? null;
  const durationMs = v['duration_ms'] ?? null;
  if (typeof timestamp !== 'string' || !ISO_TIME.test(timestamp)) return undefined;
  const at = Date.parse(timestamp);
  if (!Number.isFinite(at)) return undefined;
  if (window !== undefined && (at < window.from - skewMs || at > window.to + skewMs)) return undefined;
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === 'string'))
    return undefined;
  if (!RECORDED_TOOLS.includes(argv[0] as string)) return undefined;
  if (typeof pid !== 'number' || !Number.isInteger(pid) || pid < 1 || pid > MAX_PID) return undefined;
  if (
    exitCode !== null &&
    (typeof exitCode !== 'number' || !Number.isInteger(exitCode) || exitCode < 0 || exitCode > 255)
  )
    return undefined;
  if (
    durationMs !== null &&
    (typeof durationMs !== 'number' || !Number.isSafeInteger(durationMs) || durationMs < 0)
  )
    return undefined;
  return { timestamp, argv, pid, exit_code: exitCode, duration_ms: durationMs };
}

const bytesOf = (v: unknown): number => Buffer.byteLength(JSON.stringify(v));

/** Redacts, then bounds one entry: argument count, argument length, entry bytes. */
function boundEntry(e: CommandEntry, limits: CommandLogLimits): CommandEntry {
  const { argv, redacted } = redactArgv(e.argv);
  let cut = argv.length > limits.maxArgs;
  let args = argv
    .slice(0, limits.maxArgs)
    .map((a) => (a.length > limits.maxArgChars ? ((cut = true), `${a.slice(0, limits.maxArgChars)}…`) : a));
  const build = (): CommandEntry => ({
    ...e,
    argv: args,
    ...(redacted ? { argv_redacted: true as const } : {}),
    ...(cut ? { argv_truncated: true as const } : {}),
  });
  if (bytesOf(build()) <= limits.maxEntryBytes) return build();
  // Too big: keep the leading arguments that fit (the tool name always stays).
  cut = true;
  const tool = args.slice(0, 1);
  const rest = args.slice(1);
  args = tool;
  let size = bytesOf(build());
  let keep = 0;
  for (const a of rest) {
    size += bytesOf(a) + 1;
    if (size > limits.maxEntryBytes) break;
    keep++;
  }
  args = [...tool, ...rest.slice(0, keep)];
  return build();
}

/**
 * Parses the in-pod command log: one JSON object per line. Invalid lines are skipped and counted;
 * valid entries are redacted and kept, in file order, until the count or byte cap is reached;
 * later valid entries are counted as dropped.
 */
export function parseCommandLog(content: string, opts: ParseOptions): CommandLog {
  const limits = opts.limits ?? COMMAND_LOG_LIMITS;
  const lines = content.split('\n');
  // A read cut at its cap usually ends inside a line: that fragment is not an entry of its own.
  if (opts.fileTruncated && !content.endsWith('\n')) lines.pop();
  const commands: CommandEntry[] = [];
  let bytes = 2; // []
  let skipped = 0;
  let dropped = 0;
  let redacted = 0;
  for (const line of lines) {
    if (line.trim() === '') continue;
    const entry = validEntry(line, opts.window, limits.clockSkewMs);
    if (entry === undefined) {
      skipped++;
      continue;
    }
    if (dropped > 0 || commands.length >= limits.maxEntries) {
      dropped++;
      continue;
    }
    const bounded = boundEntry(entry, limits);
    const size = bytesOf(bounded) + 1;
    if (bytes + size > limits.maxBytes) {
      dropped++;
      continue;
    }
    bytes += size;
    if (bounded.argv_redacted) redacted++;
    commands.push(bounded);
  }
  return { commands, skipped, dropped, redacted, truncated: opts.fileTruncated || dropped > 0 };
}

/**
 * The command fields of a close record. `commands_source: "operator"` says the list was written
 * inside the operator's shell and is evidence of what they chose to leave, not proof.
 */
export function commandLogFields(log: CommandLog): Record<string, unknown> {
  return {
    commands: log.commands,
    commands_source: 'operator',
    commands_skipped: log.skipped,
    commands_dropped: log.dropped,
    commands_redacted: log.redacted,
    commands_truncated: log.truncated,
  };
}
