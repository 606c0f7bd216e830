/** Input checks for pod exec: names as Kubernetes allows them, the command as a bounded argv. */

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/** Probes for bash before exec'ing it: busybox and dash exit 127 on an exec of a missing binary. */
export const DEFAULT_COMMAND = ['sh', '-c', 'command -v bash >/dev/null 2>&1 && exec bash; exec sh'];

export type Checked<T> = { ok: true; value: T } | { ok: false; message: string };

export function checkNames(
  namespace: string,
  pod: string,
  container: string | undefined,
): string | undefined {
  if (!DNS_LABEL.test(namespace))
    return `namespace ${JSON.stringify(namespace)} is not a valid Kubernetes namespace name`;
  if (pod.length > 253 || !DNS_SUBDOMAIN.test(pod))
    return `pod ${JSON.stringify(pod)} is not a valid pod name`;
  if (container !== undefined && !DNS_LABEL.test(container))
    return `container ${JSON.stringify(container)} is not a valid container name`;
  return undefined;
}

/** A command given as a JSON array of strings: 1–64 arguments, at most 16 KiB in all. */
export function checkCommand(v: unknown): Checked<string[]> {
  if (v === undefined || v === null) return { ok: true, value: DEFAULT_COMMAND };
  if (!Array.isArray(v) || v.length === 0 || v.length > 64 || v.some((a) => typeof a !== 'string'))
    return { ok: false, message: 'command must be a list of 1 to 64 strings, e.g. ["sh","-c","ls"]' };
  const argv = v as string[];
  if (argv.reduce((n, a) => n + a.length, 0) > 16 * 1024 || argv.some((a) => a.includes('\0')))
    return { ok: false, message: 'command is longer than 16 KiB or contains NUL bytes' };
  return { ok: true, value: argv };
}

/** The socket's `command=` query: base64url (or padded base64) of a JSON string array. */
export function decodeCommandParam(param: string | null): Checked<string[]> {
  if (param === null || param === '') return { ok: true, value: DEFAULT_COMMAND };
  if (param.length > 32 * 1024 || !/^[A-Za-z0-9_\-+/]+={0,2}$/.test(param))
    return { ok: false, message: 'command must be base64url of a JSON array of strings' };
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(param.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('utf8'));
  } catch {
    return { ok: false, message: 'command must be base64url of a JSON array of strings' };
  }
  return checkCommand(parsed);
}
