import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export interface K8sBinaries {
  dir: string;
  kubeApiserver: string;
  kubectl: string;
  etcd: string;
  helm: string;
  node: string;
}

let cached: K8sBinaries | undefined;

/**
 * Returns the cached control-plane binaries, building them first when the cache is cold
 * (build.sh keys the cache by the binaries' inputs, so this is instant when warm).
 *
 * build.sh prints nothing on stderr when the cache is warm; a cold build (10–25 min) prints one
 * `[build]` line per step with its elapsed and usual time, and the Go tool's output goes to a
 * log file whose path it prints on failure. Those lines always reach this process's stderr, so
 * a cold build inside a test run or `npm start` is never silent; `quiet` is accepted for older
 * callers and changes nothing.
 */
export function ensureBinaries(_opts: { quiet?: boolean } = {}): K8sBinaries {
  if (cached) return cached;
  const out = execFileSync('bash', [join(__dirname, 'build.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 16 * 1024 * 1024,
  });
  const dir = out.trim().split('\n').pop() ?? '';
  const b: K8sBinaries = {
    dir,
    kubeApiserver: join(dir, 'kube-apiserver'),
    kubectl: join(dir, 'kubectl'),
    etcd: join(dir, 'etcd'),
    helm: join(dir, 'helm'),
    node: join(dir, 'periscope-node'),
  };
  for (const p of [b.kubeApiserver, b.kubectl, b.etcd, b.helm, b.node]) {
    if (!existsSync(p))
      throw new Error(`control-plane binary missing after build: ${p} (see e2e/k8s/build.sh)`);
  }
  cached = b;
  return b;
}
