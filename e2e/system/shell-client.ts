/**
 * `npm run shell -- <cluster> [user]`: a cluster shell in this terminal, against the server that
 * `npm start` runs (dev sign-in). It uses the same API and socket as the web UI: POST
 * …/shell/sessions for a ticket, then the WebSocket with raw keystrokes and resize frames.
 */
import WebSocket from 'ws';

import { devLogin } from '../support/dev-login';

const cluster = process.argv[2] ?? 'local';
const user = process.argv[3] ?? 'admin';
const base = process.env['PERISCOPE_URL'] ?? 'http://127.0.0.1:8080';

async function main(): Promise<void> {
  const cookie = await devLogin(base, user);
  const res = await fetch(`${base}/api/clusters/${cluster}/shell/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', cookie },
    body: '{}',
  });
  const body = (await res.json()) as { socketPath?: string; error?: string; message?: string };
  if (res.status !== 201 || body.socketPath === undefined)
    throw new Error(`${res.status} ${body.error ?? ''}: ${body.message ?? ''}`);
  const ws = new WebSocket(`${base.replace(/^http/, 'ws')}${body.socketPath}`, {
    headers: { cookie, origin: base.replace('127.0.0.1', 'localhost') },
  });
  const resize = (): void => {
    if (ws.readyState === ws.OPEN)
      ws.send(
        JSON.stringify({
          type: 'resize',
          cols: process.stdout.columns || 80,
          rows: process.stdout.rows || 24,
        }),
      );
  };
  ws.on('open', () => {
    resize();
    if (process.stdin.isTTY) process.stdin.setRawMode(true);
    process.stdin.on('data', (d: Buffer) => {
      ws.send(d, { binary: true });
    });
    process.stdout.on('resize', resize);
  });
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (isBinary) {
      process.stdout.write(data);
      return;
    }
    const f = JSON.parse(data.toString()) as {
      type: string;
      phase?: string;
      message?: string;
      exitCode?: number;
      reason?: string;
      code?: string;
    };
    if (f.type === 'status') process.stderr.write(`\r\n[periscope] ${f.phase ?? ''}: ${f.message ?? ''}\r\n`);
    else if (f.type === 'idle_warn')
      process.stderr.write('\r\n[periscope] idle: the session closes soon; type something to keep it\r\n');
    else if (f.type === 'closed')
      process.stderr.write(
        `\r\n[periscope] closed (${f.reason ?? ''}${f.exitCode !== undefined ? `, exit ${f.exitCode}` : ''})\r\n`,
      );
    else if (f.type === 'error')
      process.stderr.write(`\r\n[periscope] error ${f.code ?? ''}: ${f.message ?? ''}\r\n`);
  });
  ws.on('close', () => {
    if (process.stdin.isTTY) process.stdin.setRawMode(false);
    process.exit(0);
  });
  ws.on('unexpected-response', (_req, r) => {
    process.stderr.write(`refused: HTTP ${r.statusCode ?? 0}\n`);
    process.exit(1);
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`shell: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
