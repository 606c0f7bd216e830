import type { ClusterGateway } from '@periscope/cluster-ops';
import type { ShellReapRequest } from '@periscope/protocol';
import type { PinoLogger } from 'nestjs-pino';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';

import type { ClusterRegistry, ClusterView } from '../clusters/cluster-registry.service';
import type { ServerConfig } from '../config/server-config';
import type { AgentLinks } from '../tunnel/agent-links';
import type { SharedState } from '../shared-state/shared-state.service';
import type { ShellAdmission } from './shell-admission.service';
import { ShellReaperService } from './shell-reaper.service';

describe(ShellReaperService.name, () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('reaps one agent cluster 5 s after its agent connects, sparing live sessions, and on its interval', async () => {
    vi.useFakeTimers();
    const seen: [string, ShellReapRequest][] = [];
    let onReady: ((cluster: string) => void) | undefined;
    const registry = {
      list: () => [
        { name: 'a', clusterShellEnabled: true } as ClusterView,
        { name: 'b', clusterShellEnabled: true } as ClusterView,
      ],
      gateway: (cluster: string) =>
        ({
          reapShells: (req: ShellReapRequest) => {
            seen.push([cluster, req]);
            return Promise.resolve([]);
          },
        }) as unknown as ClusterGateway,
    } as unknown as ClusterRegistry;
    const agents = { onAgentReady: (l: (c: string) => void) => (onReady = l) } as unknown as AgentLinks;
    const admission = { caps: { ids: () => ['live-1'] } } as unknown as ShellAdmission;
    const config = {
      clusterShell: { enabled: true, namespace: 'periscope-system' },
      reaper: { intervalSeconds: 300, graceSeconds: 42 },
    } as unknown as ServerConfig;
    const svc = new ShellReaperService(config, registry, agents, admission, {
      logger: pino({ level: 'silent' }),
    } as unknown as PinoLogger);
    svc.onApplicationBootstrap();

    onReady?.('b');
    onReady?.('b'); // a flapping agent is checked once
    await vi.advanceTimersByTimeAsync(4_999);
    expect(seen).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(seen).toEqual([
      ['b', { namespace: 'periscope-system', liveSessionIds: ['live-1'], graceMs: 42_000 }],
    ]);

    await vi.advanceTimersByTimeAsync(60_000); // the first full run, a minute after start
    expect(seen.map(([c]) => c)).toEqual(['b', 'a', 'b']);
    await vi.advanceTimersByTimeAsync(300_000);
    expect(seen.map(([c]) => c)).toEqual(['b', 'a', 'b', 'a', 'b']);
    svc.onApplicationShutdown();
    onReady?.('a');
    await vi.advanceTimersByTimeAsync(600_000);
    expect(seen).toHaveLength(5);
  });

  it('with replicas: without the reaper lock it reaps only the agent clusters whose tunnel it holds', async () => {
    vi.useFakeTimers();
    const seen: string[] = [];
    let held = false;
    const registry = {
      list: () =>
        ['direct', 'agent-here', 'agent-elsewhere'].map(
          (name) => ({ name, clusterShellEnabled: true }) as ClusterView,
        ),
      gateway: (cluster: string) =>
        ({
          reapShells: () => {
            seen.push(cluster);
            return Promise.resolve([]);
          },
        }) as unknown as ClusterGateway,
    } as unknown as ClusterRegistry;
    const agents = {
      onAgentReady: () => undefined,
      link: (c: string) => (c === 'agent-here' ? { connected: true } : undefined),
    } as unknown as AgentLinks;
    const admission = { caps: { ids: () => Promise.resolve(['live-1']) } } as unknown as ShellAdmission;
    const shared = { lock: (name: string) => ({ name, isHeld: () => held }) } as unknown as SharedState;
    const config = {
      clusterShell: { enabled: true, namespace: 'periscope-system' },
      reaper: { intervalSeconds: 300, graceSeconds: 42 },
    } as unknown as ServerConfig;
    const svc = new ShellReaperService(
      config,
      registry,
      agents,
      admission,
      { logger: pino({ level: 'silent' }) } as unknown as PinoLogger,
      shared,
    );
    svc.onApplicationBootstrap();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(seen).toEqual(['agent-here']);
    held = true;
    await vi.advanceTimersByTimeAsync(300_000);
    expect(seen).toEqual(['agent-here', 'direct', 'agent-here', 'agent-elsewhere']);
    svc.onApplicationShutdown();
  });
});
