import type { NestExpressApplication } from '@nestjs/platform-express';
import { ConfigError } from '@periscope/config';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createAgentApp } from './agent-app';
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

describe('agent HTTP surface', () => {
  let app: NestExpressApplication;
  let base: string;
  beforeAll(async () => {
    app = await createAgentApp(loadAgentConfig(ENV), { runtime: false });
    await app.listen(0, '127.0.0.1');
    base = await app.getUrl();
  });
  afterAll(async () => {
    await app.close();
  });

  it('answers /healthz, /readyz and /metrics', async () => {
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ok' });
    const metrics = await fetch(`${base}/metrics`);
    expect(await metrics.text()).toContain('periscope_nodejs_eventloop_lag_seconds');
  });
});
