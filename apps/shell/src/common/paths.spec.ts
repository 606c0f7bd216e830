import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

import { describe, expect, it } from 'vitest';

import { AUDITED_TOOLS, realBinaryPath } from '../audit-exec/allow-list';
import { IMAGE_PATHS } from './paths';

/** The image's filesystem contract, shared with docker/Dockerfile.shell and the integration test. */
const layout = JSON.parse(
  readFileSync(resolve(__dirname, '../../../../docker/shell-image.json'), 'utf8'),
) as {
  files: { path: string }[];
  symlinks: { path: string; target: string }[];
  directories: { path: string; mountPoint?: boolean }[];
  env: Record<string, string>;
};

describe('the programs and docker/shell-image.json agree', () => {
  it('has a symlink to the wrapper and a real binary for every audited tool', () => {
    for (const tool of AUDITED_TOOLS) {
      expect(layout.symlinks).toContainEqual({
        path: `/usr/local/bin/${tool}`,
        target: 'periscope-audit-exec',
      });
      expect(layout.files.map((f) => f.path)).toContain(realBinaryPath(IMAGE_PATHS.realBinDir, tool));
    }
    expect(layout.symlinks).toHaveLength(AUDITED_TOOLS.length);
  });

  it('mounts the kubeconfig and keeps the audit file where the programs look for them', () => {
    const dirs = layout.directories.map((d) => d.path);
    expect(dirs).toContain(dirname(IMAGE_PATHS.kubeconfig));
    expect(dirs).toContain(dirname(IMAGE_PATHS.defaultAuditFile));
    expect(layout.env['KUBECONFIG']).toBe(IMAGE_PATHS.kubeconfig);
    expect(join(IMAGE_PATHS.fallbackHome, '..')).toBe('/tmp');
  });
});
