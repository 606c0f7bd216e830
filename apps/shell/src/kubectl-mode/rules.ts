/**
 * What the kubectl-only prompt runs: a parsed line becomes a kubectl or helm call only if its
 * subcommand is on an allow-list and it names no credential, cluster or program of its own.
 * Pure logic; the reasons are in docs/cluster-shell.md, "kubectl-only mode".
 */

export type Tool = 'kubectl' | 'helm';

/** Words the prompt handles itself. */
export const BUILTINS = ['help', 'exit', 'history', 'clear'] as const;
export type Builtin = (typeof BUILTINS)[number];

/**
 * kubectl subcommands that run. Not listed, so refused: `cp` (writes local files, the audit file
 * among them), `proxy` (serves local files), `plugin`, `kustomize` and `completion` (no local
 * files to work on, `kustomize` can run programs), `alpha`, and every unknown word (kubectl
 * would look for a `kubectl-<word>` plugin program).
 */
export const KUBECTL_SUBCOMMANDS = [
  'annotate',
  'api-resources',
  'api-versions',
  'apply',
  'attach',
  'auth',
  'autoscale',
  'certificate',
  'cluster-info',
  'config',
  'cordon',
  'create',
  'debug',
  'delete',
  'describe',
  'diff',
  'drain',
  'edit',
  'events',
  'exec',
  'explain',
  'expose',
  'get',
  'help',
  'label',
  'logs',
  'options',
  'patch',
  'port-forward',
  'replace',
  'rollout',
  'run',
  'scale',
  'set',
  'taint',
  'top',
  'uncordon',
  'version',
  'wait',
] as const;

/** kubectl subcommands that exist but are refused (named so `cp …` is refused as kubectl's). */
export const KUBECTL_REFUSED_SUBCOMMANDS = [
  'alpha',
  'completion',
  'cp',
  'kustomize',
  'plugin',
  'proxy',
] as const;

/** `kubectl config` subcommands that only read (the kubeconfig is the session's, read-only). */
export const KUBECTL_CONFIG_SUBCOMMANDS = [
  'current-context',
  'get-clusters',
  'get-contexts',
  'get-users',
  'view',
] as const;

/**
 * helm subcommands that run. Not listed: `plugin` and unknown words (helm runs plugins), `pull`,
 * `package`, `push`, `create`, `dependency`, `verify` (local chart files), `completion`.
 */
export const HELM_SUBCOMMANDS = [
  'env',
  'get',
  'help',
  'history',
  'install',
  'lint',
  'list',
  'ls',
  'registry',
  'repo',
  'rollback',
  'search',
  'show',
  'status',
  'template',
  'test',
  'uninstall',
  'upgrade',
  'version',
] as const;

/** kubectl subcommands that reach into a pod; refused for the shell's own pod and namespace. */
export const POD_ENTRY_SUBCOMMANDS = ['exec', 'attach', 'debug', 'port-forward'] as const;

/** Resource types offered by tab completion after get/describe/edit/… (a static list: cheap). */
export const COMMON_RESOURCES = [
  'all',
  'configmaps',
  'cronjobs',
  'daemonsets',
  'deployments',
  'endpoints',
  'events',
  'horizontalpodautoscalers',
  'ingresses',
  'jobs',
  'namespaces',
  'networkpolicies',
  'nodes',
  'persistentvolumeclaims',
  'persistentvolumes',
  'poddisruptionbudgets',
  'pods',
  'replicasets',
  'rolebindings',
  'roles',
  'secrets',
  'serviceaccounts',
  'services',
  'statefulsets',
  'storageclasses',
] as const;

/** Name prefix of every session pod (`periscope-shell-<session id>`). */
export const SHELL_POD_PREFIX = 'periscope-shell-';

export interface RuleContext {
  /** the session pod's namespace (PERISCOPE_SHELL_NAMESPACE), when the pod spec passes it */
  shellNamespace?: string;
}

export type Decision =
  | { kind: 'empty' }
  | { kind: 'builtin'; name: Builtin; args: string[] }
  | { kind: 'run'; tool: Tool; args: string[] }
  | { kind: 'refused'; message: string };

const HINT = '"help" lists what is allowed';

function refused(text: string): Decision {
  return { kind: 'refused', message: `refused: ${text}; ${HINT}` };
}

/** Credentials, identity and target cluster come from the session kubeconfig, never a flag. */
const KUBECTL_IDENTITY_FLAGS = new Set([
  'kubeconfig',
  'token',
  'server',
  'as',
  'as-group',
  'as-uid',
  'user',
  'username',
  'password',
  'context',
  'cluster',
  'certificate-authority',
  'insecure-skip-tls-verify',
  'tls-server-name',
]);
/** Flags that write local files (the audit file lives on the same file system). */
const KUBECTL_FILE_FLAGS = new Set([
  'cache-dir',
  // not --profile: `kubectl debug --profile=general` needs it (the global profiler's file is
  // profile.pprof in the working directory unless --profile-output moves it)
  'profile-output',
  'log-file',
  'log-dir',
  'output-directory',
]);
const HELM_IDENTITY_FLAGS = new Set([
  'kubeconfig',
  'registry-config',
  'repository-config',
  'repository-cache',
]);
/** Flags that make helm run a program or write local files. */
const HELM_PROGRAM_FLAGS = new Set(['post-renderer', 'post-renderer-args', 'plugins-dir', 'output-dir']);

/** pflag as kubectl configures it treats `_` and `-` in flag names alike. */
function flagName(arg: string): string | undefined {
  if (!arg.startsWith('--') || arg === '--') return undefined;
  const eq = arg.indexOf('=');
  return (eq < 0 ? arg.slice(2) : arg.slice(2, eq)).replace(/_/g, '-').toLowerCase();
}

/** kubectl shorthand flags that take no value (a cluster like `-itA` continues after them). */
const KUBECTL_BOOL_SHORTHANDS = new Set(['A', 'i', 't', 'w', 'R', 'q', 'h', 'W', 'r']);

/**
 * The shorthand letters a single-dash argument sets, as pflag reads it: letters until the first
 * one that takes a value (the rest of the argument is that value).
 */
function shorthands(arg: string, boolShorthands: ReadonlySet<string>): string[] {
  if (!arg.startsWith('-') || arg.startsWith('--') || arg === '-') return [];
  const out: string[] = [];
  for (const ch of arg.slice(1)) {
    if (ch === '=') break;
    out.push(ch);
    if (!boolShorthands.has(ch)) break;
  }
  return out;
}

function flagRefusal(tool: Tool, args: readonly string[]): Decision | undefined {
  for (const arg of args) {
    if (arg === '--') break; // what follows is the remote command of exec/debug/run
    const name = flagName(arg);
    if (name !== undefined) {
      if (tool === 'kubectl') {
        if (KUBECTL_IDENTITY_FLAGS.has(name) || name.startsWith('client-') || name.startsWith('as-'))
          return refused(
            `--${name}: this session's credentials and cluster are fixed (the session kubeconfig); no flag may change them`,
          );
        if (KUBECTL_FILE_FLAGS.has(name))
          return refused(`--${name}: it writes local files; this shell reads and writes none`);
        if (name === 'helm-command' || name === 'enable-exec' || name === 'enable-alpha-plugins')
          return refused(`--${name}: it runs other programs`);
      } else {
        if (HELM_IDENTITY_FLAGS.has(name) || name.startsWith('kube-'))
          return refused(
            `--${name}: this session's credentials and cluster are fixed (the session kubeconfig); no flag may change them`,
          );
        if (HELM_PROGRAM_FLAGS.has(name))
          return refused(`--${name}: it runs another program or writes local files`);
      }
      continue;
    }
    if (tool === 'kubectl' && shorthands(arg, KUBECTL_BOOL_SHORTHANDS).includes('s'))
      return refused(
        "-s (--server): this session's credentials and cluster are fixed (the session kubeconfig); no flag may change them",
      );
  }
  return undefined;
}

/** Global flags allowed before the subcommand, with whether they take a separate value. */
const LEADING_FLAGS: Record<Tool, Record<string, boolean>> = {
  kubectl: { '-n': true, '--namespace': true, '-v': true, '--v': true, '--request-timeout': true },
  helm: { '-n': true, '--namespace': true, '--debug': false },
};

/**
 * Finds the subcommand: the first word that is not a global flag. Only a few global flags may
 * come before it (`-n ns`, `--namespace=ns`, `-v 6`; helm `--debug`): anything else would make
 * the word kubectl takes as its subcommand depend on flag definitions, so it is refused.
 */
function subcommandAt(tool: Tool, args: readonly string[]): number | Decision {
  const allowed = LEADING_FLAGS[tool];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (!arg.startsWith('-')) return i;
    const eq = arg.indexOf('=');
    const name = eq < 0 ? arg : arg.slice(0, eq);
    if (Object.hasOwn(allowed, name)) {
      if (eq < 0 && allowed[name] === true) i++;
      continue;
    }
    if (/^-[nv][^=]/.test(arg) && tool === 'kubectl') continue; // -nkube-system, -v6
    if (/^-n[^=]/.test(arg) && tool === 'helm') continue;
    return refused(
      `${arg} before the ${tool} command name: put options after it (e.g. "${tool} get … ${arg}"); only -n/--namespace may come first`,
    );
  }
  return args.length;
}

/** Every value given to -n/--namespace, in any of pflag's forms. */
export function namespaceValues(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === '--') break;
    if (arg === '-n' || arg === '--namespace') {
      const next = args[i + 1];
      if (next !== undefined) out.push(next);
      i++;
    } else if (arg.startsWith('--namespace=')) out.push(arg.slice('--namespace='.length));
    else if (arg.startsWith('-n=')) out.push(arg.slice(3));
    else if (/^-n./.test(arg)) out.push(arg.slice(2));
  }
  return out;
}

/** The value of `--pod`/`-p` style flags and plain words that could name the target pod. */
function namesShellPod(args: readonly string[]): string | undefined {
  for (const arg of args) {
    if (arg === '--') break;
    // A word, or a flag value (`--pod=x`, `--copy-to=x`, `-p=x`): match on what follows "=", too.
    const candidates = [arg, arg.slice(arg.indexOf('=') + 1)];
    for (const c of candidates) {
      const name = c.slice(c.lastIndexOf('/') + 1).replace(/:.*$/, '');
      if (name.startsWith(SHELL_POD_PREFIX)) return c;
    }
  }
  return undefined;
}

/**
 * Decides what a parsed line does. A line that does not start with `kubectl` or `helm` is a
 * kubectl command when its first word is a kubectl subcommand (`get pods` = `kubectl get pods`).
 */
export function decide(words: readonly string[], ctx: RuleContext = {}): Decision {
  const first = words[0];
  if (first === undefined) return { kind: 'empty' };
  if ((BUILTINS as readonly string[]).includes(first))
    return { kind: 'builtin', name: first as Builtin, args: words.slice(1) };

  let tool: Tool;
  let args: string[];
  if (first === 'kubectl' || first === 'helm') {
    tool = first;
    args = words.slice(1);
  } else if (
    (KUBECTL_SUBCOMMANDS as readonly string[]).includes(first) ||
    (KUBECTL_REFUSED_SUBCOMMANDS as readonly string[]).includes(first) ||
    first.startsWith('-')
  ) {
    tool = 'kubectl';
    args = [...words];
  } else {
    return refused(
      `"${first}" is not a kubectl command: this is a kubectl-only shell, no other program runs (type "get pods", "kubectl get pods" or "helm list")`,
    );
  }

  const at = subcommandAt(tool, args);
  if (typeof at !== 'number') return at;
  const sub = args[at];
  if (sub === undefined)
    return refused(`${tool} needs a command (e.g. "${tool === 'kubectl' ? 'get pods' : 'helm list'}")`);
  const allowList: readonly string[] = tool === 'kubectl' ? KUBECTL_SUBCOMMANDS : HELM_SUBCOMMANDS;
  if (!allowList.includes(sub)) {
    const why =
      sub === 'plugin'
        ? 'plugins are programs of their own'
        : sub === 'cp'
          ? 'it reads and writes local files (this shell has none to copy)'
          : `it is not on this shell's list (${tool} would look for a plugin program of that name)`;
    return refused(`"${tool} ${sub}" is not available: ${why}`);
  }

  const flag = flagRefusal(tool, args);
  if (flag !== undefined) return flag;

  if (tool === 'kubectl' && sub === 'config') {
    const verb = args.slice(at + 1).find((a) => !a.startsWith('-'));
    if (verb === undefined || !(KUBECTL_CONFIG_SUBCOMMANDS as readonly string[]).includes(verb))
      return refused(
        `"${verb === undefined ? 'kubectl config' : `kubectl config ${verb}`}" is not available: the session kubeconfig is fixed; allowed: ${KUBECTL_CONFIG_SUBCOMMANDS.join(', ')}`,
      );
    if (args.some((a) => /^--(raw|flatten)(=|$)/.test(a)))
      return refused('kubectl config view --raw/--flatten: it would print the session credentials');
  }

  if (tool === 'kubectl' && (POD_ENTRY_SUBCOMMANDS as readonly string[]).includes(sub)) {
    const named = namesShellPod(args.slice(at + 1));
    if (named !== undefined)
      return refused(
        `"kubectl ${sub}" into ${named}: periscope-shell-* pods are session pods (this one holds your session credentials); ${sub} into them is never allowed`,
      );
    const ns = ctx.shellNamespace;
    if (ns !== undefined && ns !== '') {
      const given = namespaceValues(args);
      if (given.includes(ns) || (given.length === 0 && ns === 'default'))
        return refused(
          `"kubectl ${sub}" in namespace ${ns}: it holds the session pods; ${sub} there is not allowed from a cluster shell`,
        );
    }
  }
  return { kind: 'run', tool, args };
}
