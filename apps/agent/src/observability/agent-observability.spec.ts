import { REDACTED_LOG_PATHS } from '@periscope/observability';
import { describe, expect, it } from 'vitest';

import { AGENT_REDACTED_LOG_PATHS, Readiness } from './agent-observability';

describe('the agent observability without NestJS', () => {
  it('redacts exactly what the library redacts for the server', () => {
    expect(AGENT_REDACTED_LOG_PATHS).toEqual(REDACTED_LOG_PATHS);
  });

  it('is ready when every check is, names failing and throwing checks, and is not ready once shutting down', async () => {
    const r = new Readiness();
    expect(await r.evaluate()).toEqual({ ready: true, checks: {} });
    let connected = false;
    r.register('tunnel', () => (connected ? undefined : 'tunnel not connected'));
    r.register('store', () => Promise.reject(new Error('store unreachable')));
    expect(await r.evaluate()).toEqual({
      ready: false,
      checks: { tunnel: 'tunnel not connected', store: 'store unreachable' },
    });
    connected = true;
    r.register('store', () => undefined);
    expect(await r.evaluate()).toEqual({ ready: true, checks: { tunnel: 'ok', store: 'ok' } });
    r.shutdown();
    expect(await r.evaluate()).toEqual({
      ready: false,
      checks: { shutdown: 'shutting down', tunnel: 'ok', store: 'ok' },
    });
  });
});
