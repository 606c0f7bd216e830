/**
 * Fixed paths of the shell image. The pod spec, the charts, `docker/Dockerfile.shell` and
 * `docker/shell-image.json` rely on the same values (checked by `e2e/shell/dockerfiles.spec.ts`).
 */
export const IMAGE_PATHS = {
  /** The session Secret is mounted here; the kubeconfig every kubectl/helm call uses. */
  kubeconfig: '/etc/periscope/kubeconfig',
  /** Where the wrapped tools' real binaries live (`<name>-real`). */
  realBinDir: '/opt/periscope/bin',
  /** Default in-pod audit file when `PERISCOPE_SHELL_AUDIT_FILE` is unset (as in the pod spec). */
  defaultAuditFile: '/tmp/periscope-shell/audit.jsonl',
  /** HOME for bash when the image's HOME is not writable (read-only root file system). */
  fallbackHome: '/tmp/periscope-home',
  bash: '/bin/bash',
} as const;
