/**
 * Redaction of secret-bearing values in a kubectl or helm command line before it is stored in
 * the audit record. Only argv is ever stored: the contents of files named by `-f`, `--from-file`,
 * `--from-env-file` or `--set-file` never enter it, so those paths are kept.
 *
 * What is hidden (the value becomes `***`, the flag or key stays so the record still says what
 * was set):
 * - secret flags in both `--flag value` and `--flag=value` forms: `--token`, `--password`,
 *   `--client-key`, `--client-key-data`, `--client-certificate-data`, `--docker-password`,
 *   `--kube-token` and any long flag whose name reads as a secret (`--api-key`, `--db-password`);
 * - `--from-literal`, `--env`/`-e`, `--auth-provider-arg`, `--exec-env`: `key=***`;
 * - every value of helm `--set`, `--set-string`, `--set-json`, `--set-literal` (`key=***`): a key
 *   name does not reliably tell a secret (`rootPass`, `dsn`, `webhookUrl`), so none is kept;
 * - `helm registry login -p`, the value of `kubectl config set <path> <value>` when the path
 *   ends in a credential, `kubectl set env KEY=VALUE`, `kubectl patch` of a Secret;
 * - anywhere in any argument (also after `--`): the password of `scheme://user:pass@host`,
 *   authorization-like HTTP headers, `KEY=value` where KEY reads as a secret, secret keys of a
 *   JSON argument and the values of its `data`/`stringData`, `curl -u user:pass`, `mysql -pX`.
 */

export const MASK = '***';

export interface RedactedArgv {
  argv: string[];
  /** Whether any value was replaced. */
  redacted: boolean;
}

type ValueKind = 'whole' | 'keyed' | 'helm-set';

/** Flags whose value is secret whatever the command (names without dashes). */
const SECRET_FLAGS: ReadonlyMap<string, ValueKind> = new Map<string, ValueKind>([
  ['token', 'whole'],
  ['password', 'whole'],
  ['client-key', 'whole'],
  ['client-key-data', 'whole'],
  ['client-certificate-data', 'whole'],
  ['docker-password', 'whole'],
  ['kube-token', 'whole'],
  ['from-literal', 'keyed'],
  ['auth-provider-arg', 'keyed'],
  ['exec-env', 'keyed'],
]);

const HELM_SET_FLAGS: ReadonlySet<string> = new Set(['set', 'set-string', 'set-json', 'set-literal']);

/** Flags whose names read as secrets but take no value; the next argument is not theirs. */
const BOOLEAN_FLAGS: ReadonlySet<string> = new Set(['password-stdin', 'pass-credentials', 'hide-secret']);

/** kubectl and helm flags that take a separate value; only used to find the subcommand words. */
const VALUE_FLAGS: ReadonlySet<string> = new Set([
  'n',
  'namespace',
  'context',
  'kube-context',
  'cluster',
  'user',
  'kubeconfig',
  's',
  'server',
  'as',
  'as-group',
  'as-uid',
  'kube-as-user',
  'kube-as-group',
  'kube-apiserver',
  'kube-ca-file',
  'request-timeout',
  'cache-dir',
  'certificate-authority',
  'client-certificate',
  'tls-server-name',
  'v',
  'vmodule',
  'o',
  'output',
  'l',
  'selector',
  'f',
  'filename',
  'values',
  'c',
  'container',
  'p',
  'patch',
  'type',
  'image',
  'version',
  'repo',
  'timeout',
  'username',
  'u',
  'registry-config',
  'repository-config',
  'repository-cache',
]);

const SECRET_WORDS: ReadonlySet<string> = new Set([
  'password',
  'passwd',
  'passphrase',
  'pass',
  'pwd',
  'secret',
  'token',
  'credential',
  'credentials',
  'apikey',
  'bearer',
]);
/** `<word> key` pairs that name key material. */
const KEY_QUALIFIERS: ReadonlySet<string> = new Set([
  'api',
  'private',
  'access',
  'client',
  'signing',
  'encryption',
  'account',
  'master',
  'secret',
]);
const EXPLICIT_SECRET_NAMES: ReadonlySet<string> = new Set(['client-certificate-data', 'id-token']);

/** Headers whose value is a credential. */
const SECRET_HEADER =
  /^(\s*)(authorization|proxy-authorization|cookie|set-cookie|x-api-key|x-auth-token|private-token|x-vault-token)(\s*:\s*)\S.*$/is;
/** The same headers inside free text (`sh -c 'curl -H "Authorization: Bearer x" …'`). */
const INLINE_SECRET_HEADER =
  /\b(authorization|proxy-authorization|cookie|x-api-key|x-auth-token|private-token|x-vault-token)(\s*:\s*)(?:(?:bearer|basic|token|negotiate|digest)\s+)?[^\s"',;]+/gi;
/** `scheme://user:password@` */
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/[^/\s:@]*):([^@/\s]*)@/gi;
/** `KEY=value` or `--key=value` inside free text; the value ends at whitespace, `,`, `;`, `&`, `|`. */
const TEXT_PAIR = /(^|[\s,;&|"'{(])(-{0,2}[A-Za-z_][\w.-]*)=("[^"]*"|'[^']*'|[^\s,;&|"')}]*)/g;
/** `--flag value` inside free text (a shell string after `--`). */
const TEXT_FLAG = /(^|\s)(--[A-Za-z][\w-]*)(\s+)("[^"]*"|'[^']*'|[^\s;&|]+)/g;
/** A helm value key: a dotted path, indexes, escaped dots. */
const HELM_KEY = /^[A-Za-z0-9_\-.[\]\\/]+$/;

/** Words of a name: `dbPassword`, `DB_PASSWORD`, `db-password` → db, password. */
function words(name: string): string[] {
  return name
    .replace(/^-+/, '')
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w !== '');
}

/** Whether a flag, key or variable name reads as a secret (password, token, api key, …). */
export function isSecretName(name: string): boolean {
  const bare = name.replace(/^-+/, '').toLowerCase();
  if (EXPLICIT_SECRET_NAMES.has(bare)) return true;
  let previous = '';
  for (const word of words(name)) {
    if (SECRET_WORDS.has(word)) return true;
    if (/password|passwd|secret|token/.test(word)) return true;
    if (word === 'key' && KEY_QUALIFIERS.has(previous)) return true;
    previous = word;
  }
  return false;
}

/** Splits `a=1,b=2` on commas that are not escaped (`\,`). */
function splitUnescaped(value: string, sep: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < value.length; i++) {
    const ch = value.charAt(i);
    if (ch === '\\' && i + 1 < value.length) {
      cur += ch + value.charAt(i + 1);
      i++;
    } else if (ch === sep) {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  parts.push(cur);
  return parts;
}

function maskValue(kind: ValueKind, value: string): string {
  switch (kind) {
    case 'whole':
      return MASK;
    case 'keyed': {
      const eq = value.indexOf('=');
      return eq > 0 ? `${value.slice(0, eq)}=${MASK}` : MASK;
    }
    case 'helm-set':
      return splitUnescaped(value, ',')
        .map((part) => {
          const eq = part.indexOf('=');
          const key = eq > 0 ? part.slice(0, eq) : '';
          return HELM_KEY.test(key) ? `${key}=${MASK}` : MASK;
        })
        .join(',');
  }
}

/** Secret keys and Secret data in a JSON argument (a patch, --overrides); undefined when not JSON. */
function redactJson(text: string): string | undefined {
  const t = text.trim();
  if (!(t.startsWith('{') || t.startsWith('['))) return undefined;
  let doc: unknown;
  try {
    doc = JSON.parse(t);
  } catch {
    return undefined;
  }
  const walk = (v: unknown, allSecret: boolean): unknown => {
    if (Array.isArray(v)) return v.map((i) => walk(i, allSecret));
    if (v !== null && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      // An env entry or similar: {"name": "DB_PASSWORD", "value": "…"}.
      const namedSecret = typeof o['name'] === 'string' && isSecretName(o['name']);
      const out: Record<string, unknown> = {};
      for (const [k, val] of Object.entries(o)) {
        if (
          allSecret ||
          isSecretName(k) ||
          (namedSecret && k === 'value') ||
          ((k === 'data' || k === 'stringData') && val !== null && typeof val === 'object')
        ) {
          out[k] =
            val !== null && typeof val === 'object'
              ? walk(val, true)
              : typeof val === 'string' || typeof val === 'number'
                ? MASK
                : val;
        } else out[k] = walk(val, false);
      }
      return out;
    }
    if (typeof v === 'string') return allSecret ? MASK : scrubText(v, false);
    if (typeof v === 'number') return allSecret ? MASK : v;
    return v;
  };
  const out = JSON.stringify(walk(doc, false));
  // Nothing hidden: keep the argument exactly as typed (spacing and key order included).
  return out === JSON.stringify(doc) ? text : out;
}

/**
 * Free-text rules, for any argument: URL passwords, credential headers, secret `KEY=value` and
 * secret `--flag value` pairs, JSON. `afterDashes` adds `curl -u user:pass`.
 */
export function scrubText(text: string, afterDashes: boolean): string {
  const json = redactJson(text);
  if (json !== undefined) return json;
  let out = text.replace(URL_USERINFO, `$1:${MASK}@`);
  if (SECRET_HEADER.test(out)) out = out.replace(SECRET_HEADER, `$1$2$3${MASK}`);
  else out = out.replace(INLINE_SECRET_HEADER, `$1$2${MASK}`);
  out = out.replace(TEXT_PAIR, (all, lead: string, key: string) =>
    isSecretName(key) && !BOOLEAN_FLAGS.has(key.replace(/^-+/, '')) ? `${lead}${key}=${MASK}` : all,
  );
  out = out.replace(TEXT_FLAG, (all, lead: string, flag: string, gap: string) => {
    const name = flag.slice(2);
    return isSecretName(name) && !BOOLEAN_FLAGS.has(name) ? `${lead}${flag}${gap}${MASK}` : all;
  });
  if (afterDashes) out = out.replace(/(^|\s)(-u|--user)(\s+|=)([^\s:]+):(\S+)/g, `$1$2$3$4:${MASK}`);
  return out;
}

interface Flag {
  /** name without dashes */
  name: string;
  short: boolean;
  /** the value after `=`, or attached to a short flag (`-pX`) */
  inline: string | undefined;
  /** `--name=` / `-p` as written, to rebuild the argument */
  head: string;
}

function parseFlag(arg: string): Flag | undefined {
  if (arg.startsWith('--') && arg.length > 2) {
    const eq = arg.indexOf('=');
    return eq < 0
      ? { name: arg.slice(2), short: false, inline: undefined, head: arg }
      : { name: arg.slice(2, eq), short: false, inline: arg.slice(eq + 1), head: arg.slice(0, eq + 1) };
  }
  if (arg.startsWith('-') && arg.length > 1 && arg !== '-' && !/^-\d/.test(arg)) {
    const name = arg.charAt(1);
    const rest = arg.slice(2);
    if (rest === '') return { name, short: true, inline: undefined, head: arg };
    return rest.startsWith('=')
      ? { name, short: true, inline: rest.slice(1), head: arg.slice(0, 3) }
      : { name, short: true, inline: rest, head: arg.slice(0, 2) };
  }
  return undefined;
}

/** The subcommand words: positional arguments, skipping the values of known value flags. */
function subcommand(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length && out.length < 4; i++) {
    const a = args[i] ?? '';
    if (a === '--') break;
    const f = parseFlag(a);
    if (f === undefined) out.push(a);
    else if (f.inline === undefined && VALUE_FLAGS.has(f.name)) i++;
  }
  return out;
}

/** How the value of a flag is masked in this command, or undefined when it is kept. */
function kindOf(tool: string, sub: readonly string[], f: Flag): ValueKind | undefined {
  if (f.short) {
    if (tool === 'helm' && f.name === 'p' && sub[0] === 'registry' && sub[1] === 'login') return 'whole';
    if (tool === 'kubectl' && f.name === 'e' && sub[0] === 'set' && sub[1] === 'env') return 'keyed';
    if (tool === 'kubectl' && f.name === 'p' && sub[0] === 'patch' && patchesSecret(sub)) return 'whole';
    return undefined;
  }
  const known = SECRET_FLAGS.get(f.name);
  if (known !== undefined) return known;
  if (tool === 'helm' && HELM_SET_FLAGS.has(f.name)) return 'helm-set';
  if (tool === 'kubectl' && f.name === 'env') return 'keyed';
  if (tool === 'kubectl' && f.name === 'patch' && sub[0] === 'patch' && patchesSecret(sub)) return 'whole';
  if (BOOLEAN_FLAGS.has(f.name)) return undefined;
  return isSecretName(f.name) ? 'whole' : undefined;
}

function patchesSecret(sub: readonly string[]): boolean {
  return sub.slice(1).some((w) => /^secrets?(\/|$)/i.test(w));
}

/** Whether a `--flag value` flag takes the next argument as its value here. */
function takesValue(kind: ValueKind | undefined, f: Flag): boolean {
  return kind !== undefined && f.inline === undefined && !BOOLEAN_FLAGS.has(f.name);
}

/** The program after `--` (`kubectl exec p -- mysql -pX`): generic rules plus a few known tools. */
function redactAfterDashes(args: readonly string[]): string[] {
  const program = (args[0] ?? '').split('/').pop() ?? '';
  const mysqlLike = /^(mysql|mysqldump|mysqladmin|mariadb|mariadb-dump)$/.test(program);
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? '';
    const f = parseFlag(a);
    if (mysqlLike && f?.short === true && f.name === 'p' && f.inline !== undefined) {
      out.push(`-p${MASK}`);
      continue;
    }
    if (f !== undefined && !f.short && !BOOLEAN_FLAGS.has(f.name) && isSecretName(f.name)) {
      if (f.inline !== undefined) out.push(`${f.head}${MASK}`);
      else {
        out.push(a);
        if (i + 1 < args.length) {
          out.push(MASK);
          i++;
        }
      }
      continue;
    }
    if (
      f?.short === true &&
      f.name === 'u' &&
      f.inline === undefined &&
      i + 1 < args.length &&
      /^(curl|wget)$/.test(program)
    ) {
      out.push(a, (args[i + 1] ?? '').replace(/^([^:]*):.*$/s, `$1:${MASK}`));
      i++;
      continue;
    }
    out.push(scrubText(a, true));
  }
  return out;
}

/**
 * Redacts one command line as recorded in the shell (`argv[0]` is `kubectl` or `helm`). Pure;
 * never throws. Values are replaced by `***`; flags, keys and everything else are kept as typed.
 */
export function redactArgv(argv: readonly string[]): RedactedArgv {
  const tool = argv[0] ?? '';
  const args = argv.slice(1);
  const sub = subcommand(args);
  const configSet = tool === 'kubectl' && sub[0] === 'config' && sub[1] === 'set';
  const setEnv = tool === 'kubectl' && sub[0] === 'set' && sub[1] === 'env';
  const out: string[] = [tool];
  let positional = 0;
  let configPath = '';
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? '';
    if (a === '--') {
      out.push(a, ...redactAfterDashes(args.slice(i + 1)));
      break;
    }
    const f = parseFlag(a);
    if (f === undefined) {
      positional++;
      if (configSet && positional === 3) configPath = a;
      // kubectl config set users.<name>.token <value>: the value of a credential path.
      if (configSet && positional === 4 && isCredentialPath(configPath)) out.push(MASK);
      else if (setEnv && /^[A-Za-z_][A-Za-z0-9_]*=/.test(a)) out.push(maskValue('keyed', a));
      else out.push(scrubText(a, false));
      continue;
    }
    const kind = kindOf(tool, sub, f);
    if (f.inline !== undefined) {
      out.push(
        kind !== undefined
          ? `${f.head}${maskValue(kind, f.inline)}`
          : `${f.head}${scrubText(f.inline, false)}`,
      );
      continue;
    }
    out.push(a);
    if (i + 1 >= args.length) continue;
    if (takesValue(kind, f)) {
      out.push(maskValue(kind ?? 'whole', args[i + 1] ?? ''));
      i++;
    } else if (kind === undefined && VALUE_FLAGS.has(f.name)) {
      // The value of a plain flag (`-n ns`, `-o jsonpath=…`): not a positional argument.
      out.push(scrubText(args[i + 1] ?? '', false));
      i++;
    }
  }
  const redacted = out.length !== argv.length || out.some((v, i) => v !== argv[i]);
  return { argv: out, redacted };
}

/** `users.<name>.token`, `users.<name>.client-key-data`, `….auth-provider.config.client-secret`. */
function isCredentialPath(path: string): boolean {
  const last = path.split('.').pop() ?? '';
  return isSecretName(last) || last === 'client-certificate-data';
}
