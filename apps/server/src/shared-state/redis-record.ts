/** The logger an {@link OutageLog} writes to (a PinoLogger or a pino Logger). */
export interface OutageLogger {
  info(o: object, msg: string): void;
  warn(o: object, msg: string): void;
}

/**
 * The log of a repeated Redis operation (a lease renewal, a snapshot write, a read): one warning
 * when it starts failing (with the error's message), one line when it works again; nothing for
 * the failures and successes in between (one line per outage, not one per heartbeat).
 */
export class OutageLog {
  private down = false;

  constructor(
    private readonly log: OutageLogger,
    /** `down`: what fails and what it means for the other replicas; `back`: that it works again. */
    private readonly lines: { down: string; back: string; backFields?: object },
  ) {}

  /** Whether the last operation failed. */
  get failing(): boolean {
    return this.down;
  }

  /** The operation worked: logs `back` when that ends an outage. */
  ok(): void {
    if (this.down) this.log.info(this.lines.backFields ?? {}, this.lines.back);
    this.down = false;
  }

  /** The operation failed: logs `down` when that starts an outage. */
  failed(err: unknown): void {
    if (!this.down) this.log.warn({ err: (err as Error).message }, this.lines.down);
    this.down = true;
  }
}

/**
 * A JSON record read back from Redis as an object to check field by field, or undefined (absent,
 * longer than `maxChars` and not parsed, not JSON, or not an object).
 */
export function parseRecord(
  text: string | null | undefined,
  maxChars: number,
): Record<string, unknown> | undefined {
  if (typeof text !== 'string' || text.length > maxChars) return undefined;
  let d: unknown;
  try {
    d = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof d !== 'object' || d === null) return undefined;
  return d as Record<string, unknown>;
}
