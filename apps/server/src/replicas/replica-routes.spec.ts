import { describe, expect, it } from 'vitest';

import { routeKey } from './replica-routes';

const ID = '0f0e0d0c-0b0a-4908-8706-050403020100';

describe('replica route matching', () => {
  it('routes cluster sub-paths by the agent tunnel, with the query ignored and the name unescaped', () => {
    expect(routeKey('/api/clusters/edge/shell?ticket=abc')).toEqual({ kind: 'agent', id: 'edge' });
    expect(routeKey('/api/clusters/edge/pods/ns/app/exec')).toEqual({ kind: 'agent', id: 'edge' });
    expect(routeKey('/api/clusters/edge/shell/sessions')).toEqual({ kind: 'agent', id: 'edge' });
    expect(routeKey('/api/clusters/ed%67e/pods')).toEqual({ kind: 'agent', id: 'edge' });
  });

  it('routes session paths by the session owner', () => {
    expect(routeKey(`/api/sessions/${ID}`)).toEqual({ kind: 'session', id: ID });
    expect(routeKey(`/api/sessions/${ID}/attach?received=12`)).toEqual({ kind: 'session', id: ID });
    expect(routeKey(`/api/sessions/${ID}/watch`)).toEqual({ kind: 'session', id: ID });
  });

  it('leaves everything any replica answers alone', () => {
    for (const p of [
      undefined,
      '/',
      '/api/clusters',
      '/api/clusters/edge',
      '/api/clusters?x=/a/b',
      '/api/sessions',
      '/api/sessions/not-a-session-id/attach',
      '/api/auth/whoami',
      '/api/audit',
      '/api/agents',
      '/api/agents/edge/requests',
      '/api/clusters/%E0%A4%A/pods',
      '/assets/api/clusters/edge/pods',
    ])
      expect(routeKey(p)).toBeUndefined();
  });
});
