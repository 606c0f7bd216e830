import { EventEmitter } from 'node:events';

/** A WebSocket stand-in that records frames; enough for the session lifecycle logic (unit tests). */
export class FakeSocket extends EventEmitter {
  readonly OPEN = 1;
  readyState = 1;
  bufferedAmount = 0;
  frames: Record<string, unknown>[] = [];
  output: Buffer[] = [];
  pings = 0;
  /** reading paused (stdin flow control): a real socket would stop taking frames */
  isPaused = false;
  closedWith: { code: number; reason: string } | undefined;
  send(data: string | Uint8Array): void {
    if (typeof data === 'string') this.frames.push(JSON.parse(data) as Record<string, unknown>);
    else this.output.push(Buffer.from(data));
  }
  ping(): void {
    this.pings++;
  }
  pause(): void {
    this.isPaused = true;
  }
  resume(): void {
    this.isPaused = false;
  }
  close(code: number, reason: string): void {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }
  terminate(): void {
    this.readyState = 3;
    this.emit('close');
  }
  /** the browser going away without a close frame */
  drop(): void {
    this.readyState = 3;
    this.emit('close');
  }
  text(): string {
    return Buffer.concat(this.output).toString();
  }
}
