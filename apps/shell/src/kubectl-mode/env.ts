import { join } from 'node:path';

import { IMAGE_PATHS } from '../common/paths';
import type { ShellConfig } from '../shell/config';

/**
 * The editor of `kubectl edit`: nano in restricted mode (`--restricted`, the same as `rnano`):
 * it reads and writes only the file on its command line, and cannot run commands (^T), insert
 * other files (^R), save under another name, suspend, or read nanorc files.
 */
export const RESTRICTED_EDITOR = 'nano --restricted';

/** Where kubectl and helm (the audit wrapper's symlinks) live in the image. */
export const DEFAULT_TOOL_DIR = '/usr/local/bin';

/**
 * A directory that can never exist (a path under a character device), so helm finds no plugins
 * and no plugin can be installed where helm would look.
 */
export const NO_HELM_PLUGINS = '/dev/null/periscope-no-helm-plugins';

const TERM_NAME = /^[A-Za-z0-9._+-]{1,64}$/;

/**
 * The tool directory: the image's, unless `PERISCOPE_SHELL_TOOL_DIR` (tests only; the pod spec
 * never sets it, and an operator in this mode cannot set any variable) names another.
 */
export function toolDirFrom(env: NodeJS.ProcessEnv): string {
  const dir = env['PERISCOPE_SHELL_TOOL_DIR'] ?? '';
  return dir.startsWith('/') ? dir : DEFAULT_TOOL_DIR;
}

/**
 * The fixed environment of every kubectl and helm call of the prompt. Nothing of the pod's
 * environment passes except the terminal type and the session's own variables, so no
 * `KUBECTL_EXTERNAL_DIFF`, `KUBECTL_*`, `HELM_*` (post-renderers, plugin directories, drivers),
 * `PATH` or editor reaches a child other than the values set here.
 */
export function childEnv(
  config: ShellConfig,
  parent: NodeJS.ProcessEnv,
  home: string,
  toolDir: string,
): NodeJS.ProcessEnv {
  const term = parent['TERM'] ?? '';
  const env: NodeJS.ProcessEnv = {
    PATH: `${toolDir}:/usr/bin:/bin`,
    HOME: home,
    KUBECONFIG: IMAGE_PATHS.kubeconfig,
    KUBE_EDITOR: RESTRICTED_EDITOR,
    EDITOR: RESTRICTED_EDITOR,
    VISUAL: RESTRICTED_EDITOR,
    TERM: TERM_NAME.test(term) ? term : 'xterm',
    LANG: 'C.UTF-8',
    HELM_PLUGINS: NO_HELM_PLUGINS,
    HELM_CACHE_HOME: join(home, '.cache', 'helm'),
    HELM_CONFIG_HOME: join(home, '.config', 'helm'),
    HELM_DATA_HOME: join(home, '.local', 'share', 'helm'),
    PERISCOPE_SHELL_SESSION_ID: config.sessionId,
    PERISCOPE_SHELL_AUDIT_FILE: config.auditFile,
  };
  // Tests point the wrapper at fake binaries (docs/shell-image.md); pod specs never set it.
  const realDir = parent['PERISCOPE_AUDIT_EXEC_REAL_DIR'];
  if (realDir !== undefined && realDir !== '') env['PERISCOPE_AUDIT_EXEC_REAL_DIR'] = realDir;
  return env;
}
