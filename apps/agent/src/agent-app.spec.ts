import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';

import { ConfigError } from '@periscope/config';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { AgentApp, handleShutdownSignals, SHUTDOWN_SIGNALS } from './agent-app';
import { agentConfigForLog, loadAgentConfig } from './config/agent-config';

const ENV = {
  PERISCOPE_SERVER_URL: 'https://periscope.example.com:8443',
  PERISCOPE_CLUSTER_NAME: 'edge-1',
  PERISCOPE_REGISTRATION_TOKEN: 'reg-token-do-not-log',
  PERISCOPE_LOG_LEVEL: 'warn',
};

describe(loadAgentConfig.name, () => {
  it('applies defaults and keeps the token out of the logged config', () => {
    const c = loadAgentConfig(ENV);
    expect(c).toMatchObject({
      clusterName: 'edge-1',
      namespace: 'periscope-system',
      stateSecretName: 'periscope-agent-state',
      registrationUrl: ENV.PERISCOPE_SERVER_URL,
    });
    expect(JSON.stringify(agentConfigForLog(c))).not.toContain('reg-token-do-not-log');
  });

  it('lists every problem at once', () => {
    let message = '';
    try {
      loadAgentConfig({ PERISCOPE_CLUSTER_NAME: 'Edge_1', PERISCOPE_SERVER_CA_HASH: 'md5:abc' });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      message = (err as Error).message;
    }
    expect(message).toContain('(3 problems)');
    expect(message).toContain('PERISCOPE_CLUSTER_NAME = "Edge_1": expected a DNS label');
    expect(message).toContain(
      'PERISCOPE_SERVER_CA_HASH = "md5:abc": expected sha256:<64 lowercase hex digits>',
    );
    expect(message).toContain(
      'PERISCOPE_SERVER_URL: expected the https:// URL of the server tunnel listener (required)',
    );
  });

  it('refuses a plain-http registration URL unless it is loopback (the token would cross the network in clear)', () => {
    const refused = (url: string): string => {
      try {
        loadAgentConfig({ ...ENV, PERISCOPE_REGISTRATION_URL: url });
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return (err as Error).message;
      }
      return 'accepted';
    };
    for (const url of [
      'http://periscope.example.com',
      'http://10.0.0.7:8080',
      'http://periscope.periscope-system.svc:8080/',
      'http://127.0.0.1.nip.io:8080',
      'http://localhost.example.com',
    ]) {
      const message = refused(url);
      expect(message, url).toContain('PERISCOPE_REGISTRATION_URL');
      expect(message, url).toContain('https://');
    }
    for (const url of [
      'https://periscope.example.com',
      'http://127.0.0.1:8080',
      'http://localhost:8080',
      'http://[::1]:8080',
    ])
      expect(refused(url), url).toBe('accepted');
  });
});

/** Log lines an app writes, parsed. */
function logSink(): { lines: Record<string, unknown>[]; stream: Writable } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n'))
        if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { lines, stream };
}

describe('agent HTTP surface (node:http, as the NestJS app answered it)', () => {
  let app: AgentApp;
  let base: string;
  const sink = logSink();
  beforeAll(async () => {
    app = new AgentApp(loadAgentConfig({ ...ENV, PERISCOPE_LOG_LEVEL: 'info' }), {
      runtime: false,
      logDestination: sink.stream,
    });
    base = await app.listen(0, '127.0.0.1');
  });
  afterAll(async () => {
    await app.close();
  });

  const get = async (path: string, method = 'GET') => {
    const r = await fetch(`${base}${path}`, { method });
    return {
      status: r.status,
      type: r.headers.get('content-type'),
      headers: r.headers,
      body: await r.text(),
    };
  };

  it('answers /healthz, /readyz and /metrics with the statuses, bodies and types it always had', async () => {
    expect(await get('/healthz')).toMatchObject({
      status: 200,
      type: 'application/json; charset=utf-8',
      body: '{"status":"ok"}',
    });
    expect(await get('/readyz?probe=1')).toMatchObject({ status: 200, body: '{"status":"ok","checks":{}}' });
    const metrics = await get('/metrics');
    // prom-client's type (Express reordered its parameters: `text/plain; charset=utf-8; version=0.0.4`)
    expect(metrics).toMatchObject({ status: 200, type: 'text/plain; version=0.0.4; charset=utf-8' });
    expect(metrics.headers.get('cache-control')).toBe('no-store');
    expect(metrics.body).toContain('periscope_nodejs_eventloop_lag_seconds');
    expect(metrics.body).toContain('periscope_process_resident_memory_bytes');
    // HEAD as GET without a body; a trailing slash and case do not matter (Express routing)
    const head = await get('/healthz', 'HEAD');
    expect(head).toMatchObject({ status: 200, body: '' });
    expect(head.headers.get('content-length')).toBe('15');
    expect(await get('/HEALTHZ/')).toMatchObject({ status: 200, body: '{"status":"ok"}' });
  });

  it('answers anything else 404 with the body NestJS gave', async () => {
    expect(await get('/nope?x=1')).toMatchObject({
      status: 404,
      type: 'application/json; charset=utf-8',
      body: '{"message":"Cannot GET /nope?x=1","error":"Not Found","statusCode":404}',
    });
    expect(await get('/healthz', 'POST')).toMatchObject({
      status: 404,
      body: '{"message":"Cannot POST /healthz","error":"Not Found","statusCode":404}',
    });
  });

  it('logs the effective configuration and requests other than the probes, without query strings', async () => {
    await get('/elsewhere?ticket=secret-ticket');
    await get('/healthz');
    expect(sink.lines[0]).toMatchObject({
      level: 30,
      service: 'periscope-agent',
      msg: 'effective configuration',
      config: { clusterName: 'edge-1', stateSecretName: '<redacted>' },
    });
    const requests = sink.lines.filter((l) => l['msg'] === 'request completed');
    const paths = requests.map((l) => (l['req'] as { path: string }).path);
    expect(paths).toContain('/elsewhere');
    expect(paths).not.toContain('/healthz');
    expect(requests.find((l) => (l['req'] as { path: string }).path === '/elsewhere')).toMatchObject({
      service: 'periscope-agent',
      res: { statusCode: 404 },
    });
    expect(JSON.stringify(sink.lines)).not.toContain('secret-ticket');
    expect(JSON.stringify(sink.lines)).not.toContain('reg-token-do-not-log');
  });

  it('reports a failing check as 503 with its reason', async () => {
    const other = new AgentApp(loadAgentConfig(ENV), { runtime: false, logDestination: logSink().stream });
    other.readiness.register('tunnel', () => 'tunnel not connected');
    const url = await other.listen(0, '127.0.0.1');
    try {
      const r = await fetch(`${url}/readyz`);
      expect(r.status).toBe(503);
      expect(await r.json()).toEqual({ status: 'unavailable', checks: { tunnel: 'tunnel not connected' } });
    } finally {
      await other.close();
    }
  });
});

describe(handleShutdownSignals.name, () => {
  const quietLog = () => {
    const lines: string[] = [];
    const log = {
      info: (_o: object, m: string) => lines.push(m),
      error: (_o: object, m: string) => lines.push(m),
    };
    const endLog = () => {
      lines.push('log ended');
      return Promise.resolve();
    };
    return { lines, log: log as unknown as AgentApp['log'], endLog };
  };

  it('closes the app once, then re-raises the signal with its handlers removed', async () => {
    const target = new EventEmitter();
    const { lines, log, endLog } = quietLog();
    let closes = 0;
    const killed: string[] = [];
    const app = {
      log,
      endLog,
      close: () => {
        closes++;
        return Promise.resolve();
      },
    };
    handleShutdownSignals(app, { target: target as unknown as NodeJS.Process, kill: (s) => killed.push(s) });
    expect(target.listenerCount('SIGTERM')).toBe(1);
    target.emit('SIGTERM', 'SIGTERM');
    target.emit('SIGINT', 'SIGINT');
    await new Promise((r) => setImmediate(r));
    expect(closes).toBe(1);
    expect(killed).toEqual(['SIGTERM']);
    // the log is written out before the signal ends the process (pino writes asynchronously)
    expect(lines).toEqual(['shutting down', 'log ended']);
    for (const s of SHUTDOWN_SIGNALS) expect(target.listenerCount(s), s).toBe(0);
  });

  it('exits with 1 when closing fails or outlives its deadline', async () => {
    const target = new EventEmitter();
    const { lines, log, endLog } = quietLog();
    const exits: number[] = [];
    handleShutdownSignals(
      { log, endLog, close: () => Promise.reject(new Error('stuck')) },
      { target: target as unknown as NodeJS.Process, kill: () => undefined, exit: (c) => exits.push(c) },
    );
    target.emit('SIGTERM', 'SIGTERM');
    await new Promise((r) => setImmediate(r));
    expect(exits).toEqual([1]);
    expect(lines).toContain('error during shutdown');

    const slow = new EventEmitter();
    const hung = quietLog();
    handleShutdownSignals(
      { log: hung.log, endLog: hung.endLog, close: () => new Promise<void>(() => undefined) },
      {
        target: slow as unknown as NodeJS.Process,
        kill: () => undefined,
        exit: (c) => exits.push(c),
        deadlineMs: 20,
      },
    );
    slow.emit('SIGTERM', 'SIGTERM');
    await new Promise((r) => setTimeout(r, 100));
    expect(exits).toEqual([1, 1]);
    expect(hung.lines).toContain('shutdown took longer than its deadline; exiting');
  });
});

describe('the agent process and SIGTERM', () => {
  it('ends by the signal, after logging it, while its first cluster call hangs', async () => {
    // An "apiserver" that accepts connections and never answers: the agent is still starting.
    const held: Socket[] = [];
    const silent = createServer((sock) => held.push(sock));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as { port: number }).port;
    const dir = mkdtempSync(join(tmpdir(), 'agent-sigterm-'));
    const kubeconfig = join(dir, 'kubeconfig');
    writeFileSync(
      kubeconfig,
      [
        'apiVersion: v1',
        'kind: Config',
        `clusters: [{name: c, cluster: {server: "https://127.0.0.1:${port}", insecure-skip-tls-verify: true}}]`,
        'users: [{name: u, user: {token: not-a-real-token}}]',
        'contexts: [{name: x, context: {cluster: c, user: u}}]',
        'current-context: x',
      ].join('\n'),
    );
    const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'main.ts')], {
      cwd: __dirname,
      env: {
        PATH: process.env['PATH'] ?? '',
        KUBECONFIG: kubeconfig,
        PERISCOPE_SERVER_URL: 'https://127.0.0.1:1',
        PERISCOPE_CLUSTER_NAME: 'sigterm-probe',
        PERISCOPE_AGENT_HEALTH_PORT: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    try {
      // The handlers are installed in the same tick as the configuration line is logged.
      const deadline = Date.now() + 45_000;
      while (!out.includes('effective configuration') && child.exitCode === null && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 50));
      expect(out).toContain('effective configuration');
      const ended = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
        // 'close', not 'exit': the output may still be in the pipe when the process has exited
        child.once('close', (code, signal) => {
          resolve({ code, signal });
        });
      });
      child.kill('SIGTERM');
      const result = await Promise.race([
        ended,
        new Promise<{ code: number | null; signal: string | null }>((resolve) =>
          setTimeout(() => {
            resolve({ code: null, signal: 'still running after 15 s' });
          }, 15_000),
        ),
      ]);
      expect(result, out).toEqual({ code: null, signal: 'SIGTERM' });
      expect(out).toMatch(/"signal":"SIGTERM","msg":"shutting down"/);
    } finally {
      child.kill('SIGKILL');
      for (const h of held) h.destroy();
      silent.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
