import { writeFileSync } from 'node:fs';

import { stringify } from 'yaml';

export interface KubeconfigUser {
  token?: string;
  clientCertFile?: string;
  clientKeyFile?: string;
  as?: string;
  asGroups?: string[];
  asUserExtra?: Record<string, string[]>;
}

/** Writes a single-context kubeconfig (mode 0600) and returns its path. */
export function writeKubeconfig(
  path: string,
  server: string,
  caFile: string,
  user: KubeconfigUser,
  name = 'periscope-local',
): string {
  const u: Record<string, unknown> = {};
  if (user.token !== undefined) u['token'] = user.token;
  if (user.clientCertFile !== undefined) u['client-certificate'] = user.clientCertFile;
  if (user.clientKeyFile !== undefined) u['client-key'] = user.clientKeyFile;
  if (user.as !== undefined) u['as'] = user.as;
  if (user.asGroups !== undefined) u['as-groups'] = user.asGroups;
  if (user.asUserExtra !== undefined) u['as-user-extra'] = user.asUserExtra;
  const doc = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name, cluster: { server, 'certificate-authority': caFile } }],
    users: [{ name, user: u }],
    contexts: [{ name, context: { cluster: name, user: name } }],
    'current-context': name,
  };
  writeFileSync(path, stringify(doc), { mode: 0o600 });
  return path;
}
