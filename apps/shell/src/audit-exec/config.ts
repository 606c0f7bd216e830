import { IMAGE_PATHS } from '../common/paths';

export interface AuditExecConfig {
  /** The in-pod audit file (`PERISCOPE_SHELL_AUDIT_FILE`, default as in the pod spec). */
  auditFile: string;
  /** Directory of the `<tool>-real` binaries. */
  realBinDir: string;
}

/**
 * The wrapper's only reads of the environment.
 *
 * `PERISCOPE_AUDIT_EXEC_REAL_DIR` exists for tests only (they point it at fake "real" binaries);
 * images and pod specs never set it. It is not a security boundary: the real binaries are
 * reachable from the shell anyway, which is the accepted best-effort contract of bash mode.
 */
export function auditExecConfigFrom(env: NodeJS.ProcessEnv): AuditExecConfig {
  const auditFile = env['PERISCOPE_SHELL_AUDIT_FILE'];
  const realBinDir = env['PERISCOPE_AUDIT_EXEC_REAL_DIR'];
  return {
    auditFile: auditFile !== undefined && auditFile !== '' ? auditFile : IMAGE_PATHS.defaultAuditFile,
    realBinDir: realBinDir !== undefined && realBinDir !== '' ? realBinDir : IMAGE_PATHS.realBinDir,
  };
}
