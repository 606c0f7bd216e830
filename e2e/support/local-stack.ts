/**
 * Pieces shared by the harnesses that run the built server as child processes against a local
 * control plane (e2e/system/system.ts, e2e/support/ha-stack.ts, e2e/bench/bench-system.ts): the
 * dev users and their auth file, the shell image's files mapped into the node, and the read tier's
 * rights on the cluster.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { stringify } from 'yaml';

import { ensureBinaries } from '../k8s/binaries';
import type { TestCluster } from '../k8s/cluster';
import { assembleOverlay, bundleShellPrograms, readShellImageLayout } from '../shell/image-layout';

export interface DevUser {
  subject: string;
  email: string;
  groups: string[];
}

/** platform-admins: admin tier; developers: read tier (the groups of writeDevAuthFile). */
export const DEV_USERS: DevUser[] = [
  { subject: 'admin', email: 'admin@periscope.local', groups: ['platform-admins'] },
  { subject: 'reader', email: 'reader@periscope.local', groups: ['developers'] },
];

/** `auth.yaml` at `path`: tier authorization (platform-admins admin, developers read) and `users`. */
export function writeDevAuthFile(path: string, users: readonly DevUser[]): void {
  writeFileSync(
    path,
    stringify({
      authorization: { mode: 'tier', groupTiers: { 'platform-admins': 'admin', developers: 'read' } },
      dev: { users },
    }),
  );
}

/**
 * The shell image's real files (the bundled programs, the built kubectl and helm) assembled under
 * `<work>/shell-image` (building into `<work>/shell-dist`): `imageMap` for startTestCluster, so
 * that the node runs `shellImage` from them.
 */
export function assembleShellImage(work: string): { shellImage: string; imageMap: Record<string, string> } {
  const layout = readShellImageLayout();
  const overlay = join(work, 'shell-image');
  mkdirSync(overlay);
  const bins = ensureBinaries({ quiet: true });
  assembleOverlay(overlay, layout, {
    bundles: bundleShellPrograms(join(work, 'shell-dist')),
    tools: { kubectl: bins.kubectl, helm: bins.helm },
  });
  return { shellImage: `${layout.image}:0.1.0`, imageMap: { [layout.image]: overlay } };
}

/** The read tier's rights on the cluster, as the charts' clusterRBAC grants them: `view`. */
export async function grantReadTierView(cluster: TestCluster): Promise<void> {
  await cluster.apply(
    JSON.stringify({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'periscope-tier-read' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'view' },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'periscope-tier:read' }],
    }),
  );
}
