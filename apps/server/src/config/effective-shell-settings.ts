import type { ClusterEntry } from './clusters-file';
import type { ClusterShellSettings } from './server-config';
import type { TierName } from './server-env';
import { mergePodTemplate, type ShellMode, type ShellPodTemplate } from './shell-pod-template';

/** The cluster-shell settings of one cluster: the server-wide ones under its overrides. */
export interface EffectiveShellSettings extends ClusterShellSettings {
  /** why the shell is off for this cluster by configuration, when it is */
  reason?: string;
  /** the apiserver URL written into session kubeconfigs instead of the server's own, if set */
  inClusterServer?: string;
}

/**
 * Merges `clusters[i].clusterShell` over the server-wide settings. The shell is on for a cluster
 * only when the server has it on and the cluster does not turn it off. Modes: the cluster's
 * `mode` replaces the server's mode and its per-tier modes; the cluster's `modeByTier` entries
 * win over both (see {@link shellModeFor}). The pod template merges field by field
 * (labels and annotations key by key).
 */
export function effectiveShellSettings(
  server: ClusterShellSettings,
  entry: ClusterEntry,
): EffectiveShellSettings {
  const o = entry.clusterShell;
  const modeByTier = o.mode !== undefined ? { ...o.modeByTier } : { ...server.modeByTier, ...o.modeByTier };
  const eff: EffectiveShellSettings = {
    ...server,
    enabled: server.enabled && o.enabled !== false,
    tiers: o.tiers ?? server.tiers,
    mode: o.mode ?? server.mode,
    modeByTier,
    image: o.image ?? server.image,
    idleSeconds: o.idleSeconds ?? server.idleSeconds,
    maxSessionsTotal: o.maxSessionsTotal ?? server.maxSessionsTotal,
    pod: mergePodTemplate(server.pod, o.pod ?? {}),
    ...(entry.backend === 'kubeconfig' && entry.inClusterServer !== undefined
      ? { inClusterServer: entry.inClusterServer }
      : {}),
  };
  if (!server.enabled)
    return {
      ...eff,
      reason: 'the cluster shell is disabled on the server (PERISCOPE_CLUSTER_SHELL_ENABLED)',
    };
  if (o.enabled === false)
    return {
      ...eff,
      reason: `the cluster shell is turned off for ${entry.name} (clusterShell.enabled: false in the clusters file)`,
    };
  return eff;
}

/** The mode a tier's shells run in on this cluster: its per-tier mode, else the cluster's mode. */
export function shellModeFor(s: Pick<ClusterShellSettings, 'mode' | 'modeByTier'>, tier: string): ShellMode {
  return s.modeByTier[tier as TierName] ?? s.mode;
}

/** What `/api/clusters` shows of a cluster's effective shell settings. */
export interface ClusterShellSummary {
  tiers: TierName[];
  /** the mode of each tier that may open a shell */
  modeByTier: Partial<Record<TierName, ShellMode>>;
  image: string;
  idleSeconds: number;
  maxSessionsTotal: number;
}

export function shellSummary(s: EffectiveShellSettings): ClusterShellSummary {
  return {
    tiers: s.tiers,
    modeByTier: Object.fromEntries(s.tiers.map((t) => [t, shellModeFor(s, t)])),
    image: s.image,
    idleSeconds: s.idleSeconds,
    maxSessionsTotal: s.maxSessionsTotal,
  };
}

/**
 * A cluster's shell fields as one caller sees them: off with the reason when their tier may not
 * open a shell there, else the mode their tier gets.
 */
export function shellForCaller<
  V extends {
    clusterShellEnabled: boolean;
    clusterShellReason?: string;
    clusterShellMode?: string;
    clusterShell?: ClusterShellSummary;
  },
>(view: V, tier: string | undefined): V {
  if (!view.clusterShellEnabled || view.clusterShell === undefined) return view;
  const tiers = view.clusterShell.tiers;
  const allowed = tier !== undefined && (tiers as string[]).includes(tier);
  if (!allowed) {
    const { clusterShellMode: _mode, ...rest } = view;
    return {
      ...rest,
      clusterShellEnabled: false,
      clusterShellReason: `your tier (${tier ?? 'none'}) may not open a cluster shell here; allowed: ${tiers.join(', ')}`,
    } as V;
  }
  return {
    ...view,
    clusterShellMode: view.clusterShell.modeByTier[tier as TierName] ?? view.clusterShellMode,
  };
}

/** The pod template as the provision request (and the agent) carries it. */
export function podTemplateFields(pod: ShellPodTemplate): {
  resources?: ShellPodTemplate['resources'];
  nodeSelector?: Record<string, string>;
  tolerations?: ShellPodTemplate['tolerations'];
  priorityClassName?: string;
  extraLabels?: Record<string, string>;
  annotations?: Record<string, string>;
  imagePullSecrets?: string[];
} {
  const { labels, ...rest } = pod;
  return { ...rest, ...(labels !== undefined ? { extraLabels: labels } : {}) };
}
