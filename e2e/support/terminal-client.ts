import WebSocket from 'ws';

import { until } from './wait';

/** A terminal WebSocket as the browser uses it (without the browser): frames, output bytes, close. */
export class TerminalClient {
  readonly frames: Record<string, unknown>[] = [];
  readonly chunks: Buffer[] = [];
  bytes = 0;
  closeCode: number | undefined;
  readonly ws: WebSocket;
  readonly opened: Promise<void>;
  readonly closed: Promise<number>;

  constructor(url: string, headers: Record<string, string>) {
    this.ws = new WebSocket(url, { headers });
    this.ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) {
        this.chunks.push(data);
        this.bytes += data.length;
      } else this.frames.push(JSON.parse(data.toString()) as Record<string, unknown>);
    });
    this.ws.on('error', () => undefined);
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => {
        resolve();
      });
      this.ws.once('unexpected-response', (_req, res) => {
        reject(new Error(`upgrade refused: HTTP ${res.statusCode ?? 0}`));
      });
    });
    this.closed = new Promise((resolve) =>
      this.ws.once('close', (code: number) => {
        this.closeCode = code;
        resolve(code);
      }),
    );
  }

  text(): string {
    return Buffer.concat(this.chunks).toString();
  }

  output(): Buffer {
    return Buffer.concat(this.chunks);
  }

  type(s: string): void {
    this.ws.send(Buffer.from(s));
  }

  control(frame: Record<string, unknown>): void {
    this.ws.send(JSON.stringify(frame));
  }

  frame(type: string): Record<string, unknown> | undefined {
    return this.frames.find((f) => f['type'] === type);
  }

  async waitText(what: string, re: RegExp, timeoutMs = 30_000): Promise<void> {
    try {
      await until(what, () => re.test(this.text()), timeoutMs);
    } catch (err) {
      throw new Error(
        `${(err as Error).message}; output so far: ${JSON.stringify(this.text().slice(-2000))}; frames: ${JSON.stringify(this.frames)}`,
      );
    }
  }
}
