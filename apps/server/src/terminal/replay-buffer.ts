/**
 * The tail of a session's output, addressed by absolute byte offsets, for replay on resume.
 * Holds at most `capacity` bytes; older bytes fall off the front.
 */
export class ReplayBuffer {
  private chunks: Buffer[] = [];
  private held = 0;
  /** absolute offset of the first byte still held */
  private startOffset = 0;

  constructor(readonly capacity: number) {}

  /** total bytes ever pushed (the offset the next byte will have) */
  get end(): number {
    return this.startOffset + this.held;
  }

  get start(): number {
    return this.startOffset;
  }

  /** A session taken over by another replica: its output continues at `offset` (only while empty). */
  startAt(offset: number): void {
    if (this.held > 0 || !Number.isSafeInteger(offset) || offset < 0)
      throw new RangeError(`a replay buffer can start at ${offset} only while empty`);
    this.startOffset = offset;
  }

  push(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    // A copy: the source may be a view into a larger transport buffer we must not retain.
    this.chunks.push(Buffer.from(bytes));
    this.held += bytes.length;
    while (this.held > this.capacity) {
      const first = this.chunks[0];
      if (!first) break;
      const excess = this.held - this.capacity;
      if (first.length <= excess) {
        this.chunks.shift();
        this.held -= first.length;
        this.startOffset += first.length;
      } else {
        this.chunks[0] = first.subarray(excess);
        this.held -= excess;
        this.startOffset += excess;
      }
    }
  }

  /** The bytes from `offset` to the end, or undefined when they are no longer (or never were) here. */
  since(offset: number): Buffer[] | undefined {
    if (!Number.isInteger(offset) || offset < this.startOffset || offset > this.end) return undefined;
    const out: Buffer[] = [];
    let pos = this.startOffset;
    for (const c of this.chunks) {
      const next = pos + c.length;
      if (next > offset) out.push(pos >= offset ? c : c.subarray(offset - pos));
      pos = next;
    }
    return out;
  }
}
