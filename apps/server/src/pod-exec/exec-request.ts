/** Input checks for pod exec: names as Kubernetes allows them, the command as a bounded argv. */
import { checkDto, OptionalField, WIRE_PATTERN } from '@periscope/protocol';
import {
  ArrayMaxSize,
  ArrayMinSize,
  IsArray,
  IsBoolean,
  IsOptional,
  IsString,
  Matches,
  MaxLength,
  ValidateBy,
} from 'class-validator';

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

const COMMAND_HINT = 'command must be a list of 1 to 64 strings, e.g. ["sh","-c","ls"]';
const COMMAND_MAX_CHARS = 16 * 1024;

/** A command as a JSON array of strings: 1–64 arguments, at most 16 KiB in all, no NUL bytes. */
function CommandRule(): PropertyDecorator {
  return (target, key) => {
    IsArray({ message: COMMAND_HINT })(target, key);
    ArrayMinSize(1, { message: COMMAND_HINT })(target, key);
    ArrayMaxSize(64, { message: COMMAND_HINT })(target, key);
    IsString({ each: true, message: COMMAND_HINT })(target, key);
    ValidateBy({
      name: 'commandSize',
      validator: {
        validate: (v: unknown) =>
          !Array.isArray(v) ||
          (v.every((a) => typeof a !== 'string' || !a.includes('\0')) &&
            v.reduce((n: number, a) => n + (typeof a === 'string' ? a.length : 0), 0) <= COMMAND_MAX_CHARS),
        defaultMessage: () => 'command is longer than 16 KiB or contains NUL bytes',
      },
    })(target, key);
  };
}

/** The command of an exec; absent or null means DEFAULT_COMMAND. */
export class ExecCommandDto {
  @IsOptional()
  @CommandRule()
  command?: string[] | null;
}

/** `POST /api/clusters/{cluster}/pods/{namespace}/{pod}/exec/sessions`. */
export class OpenExecDto extends ExecCommandDto {
  /** empty means the pod's default container */
  @OptionalField()
  @IsString()
  @MaxLength(253)
  container?: string;

  @OptionalField()
  @IsBoolean({ message: 'tty must be true or false' })
  tty?: boolean;
}

/** `GET /api/clusters/{cluster}/pods?namespace=…`. */
export class PodListQueryDto {
  @OptionalField()
  @Matches(WIRE_PATTERN.dnsLabel, { message: 'namespace must be a Kubernetes namespace name' })
  namespace?: string;
}

/** A command (e.g. decoded from the socket's query) checked by the rules of ExecCommandDto. */
export function checkCommand(v: unknown): Checked<string[]> {
  const r = checkDto(ExecCommandDto, { command: v });
  if (!r.ok) return { ok: false, message: r.problems.join('; ') };
  return { ok: true, value: r.value.command ?? DEFAULT_COMMAND };
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
