/**
 * Keystroke hop tracer, for measuring where a keystroke's time goes on its way through the
 * server, the tunnel and the agent (docs/benchmarks.md, "Keystroke hops").
 *
 * Off unless the process starts with PERISCOPE_TRACE_KEYSTROKE=1: then `hopTrace` is undefined
 * and every call site is one optional call on an undefined constant. When on, each mark is a
 * name, a byte count and a CLOCK_MONOTONIC timestamp (`process.hrtime`, the same clock in every
 * process of the machine, so marks of the server, the agent and a client line up), kept in a
 * fixed ring of the last RING_SIZE marks. Only frames up to SMALL_BYTES are marked (keystrokes,
 * not bulk), and never their bytes. A benchmark reads the ring through the process's inspector:
 * `globalThis[Symbol.for('periscope.hopTrace')].take()`.
 */

/** marks kept (oldest overwritten) */
export const HOP_TRACE_RING_SIZE = 8192;
/** frames larger than this are not marked */
export const HOP_TRACE_SMALL_BYTES = 256;

export interface HopMark {
  /** CLOCK_MONOTONIC nanoseconds */
  t: number;
  hop: string;
  bytes: number;
}

interface NodeLike {
  process?: { env?: Record<string, string | undefined>; hrtime?: { bigint?: () => bigint } };
}

export class HopTrace {
  private readonly t: Float64Array;
  private readonly bytes: Uint32Array;
  private readonly hops: string[];
  private next = 0;
  private count = 0;

  constructor(
    readonly size: number,
    private readonly clock: () => number,
  ) {
    this.t = new Float64Array(size);
    this.bytes = new Uint32Array(size);
    this.hops = new Array<string>(size).fill('');
  }

  /** Marks that a frame of `bytes` passed `hop` now (frames over SMALL_BYTES are ignored). */
  mark(hop: string, bytes: number): void {
    if (bytes > HOP_TRACE_SMALL_BYTES) return;
    const i = this.next;
    this.t[i] = this.clock();
    this.hops[i] = hop;
    this.bytes[i] = bytes;
    this.next = (i + 1) % this.size;
    if (this.count < this.size) this.count++;
  }

  /** The marks, oldest first, and empties the ring. */
  take(): HopMark[] {
    const out: HopMark[] = [];
    const start = (this.next - this.count + this.size) % this.size;
    for (let k = 0; k < this.count; k++) {
      const i = (start + k) % this.size;
      out.push({ t: this.t[i] ?? 0, hop: this.hops[i] ?? '', bytes: this.bytes[i] ?? 0 });
    }
    this.count = 0;
    return out;
  }
}

function monotonicNs(): () => number {
  const hr = (globalThis as NodeLike).process?.hrtime?.bigint;
  // Below 2^53 ns (104 days of uptime) the conversion is exact; past that, sub-µs bits go.
  if (hr) return () => Number(hr());
  const perf = (globalThis as { performance?: { now(): number } }).performance;
  return () => Math.round((perf?.now() ?? Date.now()) * 1e6);
}

function create(): HopTrace | undefined {
  if ((globalThis as NodeLike).process?.env?.['PERISCOPE_TRACE_KEYSTROKE'] !== '1') return undefined;
  const trace = new HopTrace(HOP_TRACE_RING_SIZE, monotonicNs());
  (globalThis as Record<symbol, unknown>)[Symbol.for('periscope.hopTrace')] = trace;
  return trace;
}

/** The process's tracer, or undefined (the default) when PERISCOPE_TRACE_KEYSTROKE is not 1. */
export const hopTrace: HopTrace | undefined = create();

interface RawSocketLike {
  prependListener(event: 'data', listener: (chunk: { length: number }) => void): unknown;
  write: (chunk: { length: number }, ...rest: unknown[]) => boolean;
}

/**
 * With the tracer on: marks `<prefix>.in` when bytes of this connection come from the kernel
 * (after TLS) and `<prefix>.out` when they are handed to it, small frames only. A no-op when the
 * tracer is off or the socket is not there.
 */
export function traceRawSocket(prefix: string, raw: unknown): void {
  const trace = hopTrace;
  const s = raw as Partial<RawSocketLike> | undefined;
  if (!trace || typeof s?.prependListener !== 'function' || typeof s.write !== 'function') return;
  const inName = `${prefix}.in`;
  const outName = `${prefix}.out`;
  // before the socket's own reader, which parses (and often handles) the frame synchronously
  s.prependListener('data', (chunk) => {
    trace.mark(inName, chunk.length);
  });
  const write = s.write.bind(s);
  s.write = (chunk, ...rest) => {
    trace.mark(outName, chunk.length);
    return write(chunk, ...rest);
  };
}
