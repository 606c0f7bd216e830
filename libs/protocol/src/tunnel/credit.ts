/**
 * Credit-based flow control for one direction of one stream (one channel).
 *
 * The receiver grants credit only for bytes its final sink accepted, announcing an absolute
 * `consumed` offset plus a window: the sender may have at most `consumed + window` bytes sent.
 * Grants go out once half a window was consumed since the last grant (so the threshold is always
 * below the window and the stream cannot deadlock), or at once when the sender is fully blocked.
 */

export class CreditViolation extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CreditViolation';
  }
}

/** The largest window a peer may grant (as the open frame's window: 16 MiB). */
export const MAX_WINDOW = 16 * 1024 * 1024;

/** Sender side: how many bytes may go out now. */
export class SendCredit {
  private sent = 0;
  private peerConsumed = 0;

  constructor(private window: number) {}

  /** Bytes that may be sent now without exceeding the peer's grant. */
  available(): number {
    return Math.max(0, this.peerConsumed + this.window - this.sent);
  }

  /** Offset of the next byte to send. */
  get offset(): number {
    return this.sent;
  }

  /** Bytes sent and not yet consumed by the peer's sink (what a replay buffer must hold). */
  get unacknowledged(): number {
    return this.sent - this.peerConsumed;
  }

  get acknowledged(): number {
    return this.peerConsumed;
  }

  /** Records `n` bytes sent; throws if that exceeds the grant (a bug on our side). */
  spend(n: number): void {
    if (n > this.available())
      throw new CreditViolation(`sending ${n} bytes with ${this.available()} of credit`);
    this.sent += n;
  }

  /** Applies a grant; stale grants (lower consumed) are ignored, impossible ones refused. */
  grant(consumed: number, window: number): void {
    if (consumed > this.sent)
      throw new CreditViolation(`peer consumed ${consumed} of ${this.sent} bytes sent`);
    if (window < 1 || window > MAX_WINDOW)
      throw new CreditViolation(`window ${window} outside 1..${MAX_WINDOW}`);
    if (consumed >= this.peerConsumed) {
      this.peerConsumed = consumed;
      this.window = window;
    }
  }

  /** After a resume: continue from what the peer says it received. */
  rewindTo(offset: number): void {
    if (offset > this.sent || offset < this.peerConsumed)
      throw new CreditViolation(
        `cannot resume from ${offset} (acked ${this.peerConsumed}, sent ${this.sent})`,
      );
    this.sent = offset;
  }

  /**
   * A stream taken over by a new peer (re-homing, mux.ts): continue at `sent`, that peer having
   * consumed `consumed` of it. Both ends start over from offsets the other one reported.
   */
  restartAt(sent: number, consumed: number): void {
    if (!Number.isSafeInteger(sent) || !Number.isSafeInteger(consumed) || consumed < 0 || consumed > sent)
      throw new CreditViolation(`cannot restart at ${sent} with ${consumed} consumed`);
    this.sent = sent;
    this.peerConsumed = consumed;
  }
}

/** Receiver side: checks incoming offsets against the grant and decides when to grant more. */
export class ReceiveCredit {
  private received = 0;
  private consumedTotal = 0;
  private announced = 0;

  constructor(readonly window: number) {
    if (window < 2) throw new RangeError('window too small');
  }

  /** Offset of the next byte expected. */
  get offset(): number {
    return this.received;
  }

  get consumed(): number {
    return this.consumedTotal;
  }

  /** Bytes received but not yet accepted by the sink. */
  get buffered(): number {
    return this.received - this.consumedTotal;
  }

  /**
   * Accepts a DATA frame at `offset` of `length` bytes. Returns how many leading bytes to skip
   * (duplicates already received, e.g. after a resume) — `length` means the whole frame is old.
   * Throws CreditViolation on a gap or on bytes beyond the granted window.
   */
  accept(offset: number, length: number): number {
    if (offset > this.received)
      throw new CreditViolation(`gap: expected offset ${this.received}, got ${offset}`);
    const end = offset + length;
    if (end > this.announced + this.window)
      throw new CreditViolation(`${end - this.announced - this.window} bytes beyond the granted window`);
    const skip = Math.min(length, this.received - offset);
    this.received = Math.max(this.received, end);
    return skip;
  }

  /** A stream taken over from another receiver: the next byte expected is `offset`. */
  startAt(offset: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`cannot start at ${offset}`);
    this.received = offset;
    this.consumedTotal = offset;
    this.announced = offset;
  }

  /** Grants everything consumed so far (a new peer starts from it); answers the consumed offset. */
  announceAll(): number {
    this.announced = this.consumedTotal;
    return this.announced;
  }

  /**
   * Records that the sink accepted `n` more bytes. Returns the absolute consumed offset to grant
   * now, or undefined when no grant is due yet.
   */
  consume(n: number): number | undefined {
    if (n < 0 || this.consumedTotal + n > this.received)
      throw new RangeError(`consuming ${n} bytes with ${this.buffered} buffered`);
    this.consumedTotal += n;
    const pending = this.consumedTotal - this.announced;
    const senderBlocked = this.received >= this.announced + this.window;
    if (pending > 0 && (pending >= this.window / 2 || senderBlocked)) {
      this.announced = this.consumedTotal;
      return this.announced;
    }
    return undefined;
  }
}
