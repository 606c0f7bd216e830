import { readFileSync } from 'node:fs';

import { parse } from 'yaml';

import { clientNode, type KubeAccess } from './kube-config';

/** Where the CA came from, for logs and errors. */
export type CaSource = 'cluster-info' | 'kubeconfig' | 'service-account';

const SA_CA = '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt';

/**
 * The cluster CA and apiserver URL to put in a session kubeconfig. Reads
 * `kube-public/cluster-info` (kubeadm format, key `kubeconfig`) and falls back to the caller's
 * own CA (its kubeconfig or mounted service-account `ca.crt`) when the ConfigMap is missing or
 * unreadable. Throws when neither works.
 */
export async function discoverClusterCa(
  kc: KubeAccess,
  opts: { preferClusterInfo: boolean; saCaPath?: string },
): Promise<{ caPem: string; server: string; source: CaSource }> {
  const own = kc.getCurrentCluster();
  const problems: string[] = [];
  if (opts.preferClusterInfo) {
    try {
      const cm = await kc
        .makeApiClient(clientNode().CoreV1Api)
        .readNamespacedConfigMap({ name: 'cluster-info', namespace: 'kube-public' });
      const doc = parse(cm.data?.['kubeconfig'] ?? '') as {
        clusters?: { cluster?: { 'certificate-authority-data'?: string; server?: string } }[];
      } | null;
      const c = doc?.clusters?.[0]?.cluster;
      if (c?.['certificate-authority-data'] && c.server) {
        return {
          caPem: Buffer.from(c['certificate-authority-data'], 'base64').toString('utf8'),
          server: c.server,
          source: 'cluster-info',
        };
      }
      problems.push('kube-public/cluster-info has no cluster with certificate-authority-data');
    } catch (err) {
      problems.push(`kube-public/cluster-info unreadable (${(err as Error).message.split('\n')[0] ?? ''})`);
    }
  }
  if (own?.caData)
    return {
      caPem: Buffer.from(own.caData, 'base64').toString('utf8'),
      server: own.server,
      source: 'kubeconfig',
    };
  if (own?.caFile) {
    try {
      return { caPem: readFileSync(own.caFile, 'utf8'), server: own.server, source: 'kubeconfig' };
    } catch (err) {
      problems.push(`CA file ${own.caFile} unreadable (${(err as Error).message})`);
    }
  }
  const saPath = opts.saCaPath ?? SA_CA;
  try {
    return {
      caPem: readFileSync(saPath, 'utf8'),
      server: own?.server ?? 'https://kubernetes.default.svc',
      source: 'service-account',
    };
  } catch {
    problems.push(`no service-account CA at ${saPath}`);
  }
  throw new Error(`cannot find the cluster CA: ${problems.join('; ')}`);
}
