import { join } from 'node:path';

/**
 * The tools whose every call is audited: `/usr/local/bin/<name>` is a symlink to
 * periscope-audit-exec and the real binary is `<realBinDir>/<name>-real`. The wrapper is C
 * (`periscope-audit-exec.c`, `AUDITED_TOOLS` there); this list is what the TypeScript side checks
 * the image layout against, and `audit-exec.spec.ts` fails unless both lists are equal. Adding a
 * tool is one entry in each, plus one symlink and one real binary in `docker/shell-image.json`
 * (and so in `docker/Dockerfile.shell`, which a test keeps in step).
 */
export const AUDITED_TOOLS = ['kubectl', 'helm'] as const;
export type AuditedTool = (typeof AUDITED_TOOLS)[number];

export function realBinaryPath(realBinDir: string, name: string): string {
  return join(realBinDir, `${name}-real`);
}
