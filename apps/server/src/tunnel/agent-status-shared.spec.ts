import { describe, expect, it } from 'vitest';

import { agentConnection } from '../clusters/cluster-registry.service';
import { routeKey } from '../replicas/replica-routes';
import {
  mergeAgentFacts,
  parseAgentView,
  type AgentFacts,
  type SharedAgentView,
} from './agent-status-shared';

const view = (over: Partial<SharedAgentView> = {}): SharedAgentView => ({
  replica: 'fwd-b',
  connectedSince: '2026-12-06T10:00:00.000Z',
  lastSeen: '2026-12-06T10:05:00.000Z',
  lastRttMs: 3,
  openStreams: 2,
  certificateNotAfter: '2027-01-01T00:00:00.000Z',
  version: '1.4.0',
  clusterShell: { enabled: true, namespace: 'periscope-shells', tiers: ['admin'] },
  ...over,
});

const local = (over: Partial<AgentFacts> = {}): AgentFacts => ({
  ...view({ replica: 'fwd-a' }),
  connected: false,
  replica: null,
  connectedSince: null,
  lastSeen: '2026-12-06T09:00:00.000Z',
  lastRttMs: 9,
  openStreams: 1,
  version: '1.3.0',
  ...over,
});

describe('mergeAgentFacts', () => {
  it('a tunnel held here wins over any record', () => {
    const here = local({ connected: true, replica: 'fwd-a', connectedSince: '2026-12-06T11:00:00.000Z' });
    expect(mergeAgentFacts(here, { live: view() })).toBe(here);
  });

  it("another replica's live record: connected, as that replica shows it", () => {
    const merged = mergeAgentFacts(local(), { live: view(), seen: view() });
    expect(merged).toEqual({ ...view(), connected: true });
    expect(agentConnection(merged)).toEqual({
      state: 'connected',
      since: '2026-12-06T10:00:00.000Z',
      lastSeen: '2026-12-06T10:05:00.000Z',
      rttMs: 3,
    });
  });

  it('never connected anywhere: undefined (the views say never-connected)', () => {
    expect(mergeAgentFacts(undefined, undefined)).toBeUndefined();
    expect(agentConnection(undefined).state).toBe('never-connected');
  });

  it('gone everywhere: disconnected with the latest last-seen and the freshest hello', () => {
    const merged = mergeAgentFacts(local(), { seen: view({ connectedSince: null }) });
    expect(merged).toMatchObject({
      connected: false,
      replica: null,
      connectedSince: null,
      lastSeen: '2026-12-06T10:05:00.000Z',
      version: '1.4.0',
      lastRttMs: 3,
      openStreams: 1, // streams wait out their grace here
    });
    expect(agentConnection(merged).state).toBe('disconnected');
    // This replica saw it last: its own facts.
    const newer = mergeAgentFacts(local({ lastSeen: '2026-12-06T12:00:00.000Z' }), { seen: view() });
    expect(newer).toMatchObject({ lastSeen: '2026-12-06T12:00:00.000Z', version: '1.3.0' });
    // Only another replica ever saw it.
    expect(agentConnection(mergeAgentFacts(undefined, { seen: view() })).state).toBe('disconnected');
  });

  it("this replica's handshake refusal shows as unavailable while no replica holds the tunnel", () => {
    const refused = local({
      unavailable: 'agent hello: names cluster "x"',
      handshakeProblem: { at: '2026-12-06T10:06:00.000Z', reason: 'agent hello: names cluster "x"' },
    });
    const c = agentConnection(mergeAgentFacts(refused, { seen: view() }));
    expect(c).toMatchObject({ state: 'unavailable', reason: 'agent hello: names cluster "x"' });
    // ...and connected once another replica holds a good one.
    expect(agentConnection(mergeAgentFacts(refused, { live: view() })).state).toBe('connected');
  });
});

describe('parseAgentView', () => {
  it('reads back what was written; refuses what is not a record', () => {
    expect(parseAgentView(JSON.stringify(view()))).toEqual(view());
    expect(parseAgentView(null)).toBeUndefined();
    expect(parseAgentView('not json')).toBeUndefined();
    expect(parseAgentView(JSON.stringify({ version: '1' }))).toBeUndefined();
    expect(parseAgentView('x'.repeat(20_000))).toBeUndefined();
    // Wrong types are dropped field by field.
    expect(parseAgentView(JSON.stringify({ replica: 'r', lastRttMs: 'fast', openStreams: null }))).toEqual({
      replica: 'r',
      connectedSince: null,
      lastSeen: null,
      lastRttMs: null,
      openStreams: 0,
      certificateNotAfter: null,
      version: null,
      clusterShell: null,
    });
  });
});

describe('routeKey: an agent request record goes to the tunnel holder', () => {
  it('routes /api/agents/{cluster}/requests/{rid} by the agent; the lists stay local', () => {
    expect(routeKey('/api/agents/edge/requests/r-12')).toEqual({ kind: 'agent', id: 'edge' });
    expect(routeKey('/api/agents')).toBeUndefined();
    expect(routeKey('/api/agents/tokens')).toBeUndefined();
    expect(routeKey('/api/clusters')).toBeUndefined();
    expect(routeKey('/api/sessions')).toBeUndefined();
  });
});
