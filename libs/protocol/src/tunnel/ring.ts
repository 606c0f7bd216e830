/** A bounded ring of recent records, newest last; old entries fall off. */
export class Ring<T> {
  private readonly items: T[] = [];

  constructor(readonly capacity: number) {}

  push(item: T): void {
    this.items.push(item);
    if (this.items.length > this.capacity) this.items.shift();
  }

  find(pred: (item: T) => boolean): T | undefined {
    for (let i = this.items.length - 1; i >= 0; i--) {
      const it = this.items[i];
      if (it !== undefined && pred(it)) return it;
    }
    return undefined;
  }

  toArray(): T[] {
    return [...this.items];
  }

  get size(): number {
    return this.items.length;
  }
}

/** One line of the diagnostics ring both tunnel ends keep. */
export interface RequestRecord {
  rid: string;
  cluster: string;
  op: string;
  streamId?: number;
  startedAt: string;
  durationMs?: number;
  outcome: 'ok' | 'error' | 'pending';
  error?: string;
  bytesIn?: number;
  bytesOut?: number;
}
