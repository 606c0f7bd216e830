import { join } from 'node:path';

/**
 * The tools whose every call is audited. `/usr/local/bin/<name>` is a symlink to
 * periscope-audit-exec and the real binary is `<realBinDir>/<name>-real`. Adding a tool is one
 * entry here plus one symlink and one real binary in `docker/shell-image.json` (and so in
 * `docker/Dockerfile.shell`, which a test keeps in step).
 */
export const AUDITED_TOOLS = ['kubectl', 'helm'] as const;
export type AuditedTool = (typeof AUDITED_TOOLS)[number];

export function isAuditedTool(name: string, allowList: readonly string[] = AUDITED_TOOLS): boolean {
  return allowList.includes(name);
}

export function realBinaryPath(realBinDir: string, name: string): string {
  return join(realBinDir, `${name}-real`);
}
