/**
 * The one way Periscope checks input it did not produce: a DTO class whose fields carry
 * `class-validator` rules (declared once, next to the type), turned from plain data with
 * `class-transformer`. HTTP bodies and queries (the server's global `ValidationPipe`), terminal
 * control frames, tunnel RPC payloads and replies, the agent's `hello` and the configuration
 * files all go through here or through the pipe, which uses the same options.
 *
 * Messages name the field by its path and say what is allowed, e.g.
 * `clusterShell.tiers.0 must be one of: read, triage, write, maintain, admin`.
 */
import 'reflect-metadata';

import { plainToInstance, type ClassConstructor } from 'class-transformer';
import { validateSync, type ValidationError, type ValidatorOptions } from 'class-validator';

export type DtoClass<T extends object> = ClassConstructor<T>;

/**
 * `strict`: fields the class does not declare are refused (HTTP bodies, configuration files,
 * terminal frames: a typo should say so). `lenient`: they are dropped (messages between a
 * server and an agent of different versions: a newer peer may send fields an older one does not
 * know).
 */
export type UnknownFields = 'strict' | 'lenient';

export function validatorOptions(unknownFields: UnknownFields): ValidatorOptions {
  return {
    whitelist: true,
    forbidNonWhitelisted: unknownFields === 'strict',
    forbidUnknownValues: true,
    validationError: { target: false, value: false },
  };
}

/** Input that is not what the contract allows; `problems` name each field and its rule. */
export class InvalidInput extends Error {
  readonly problems: string[];

  constructor(what: string, problems: string[]) {
    super(`${what}: ${problems.join('; ')}`);
    this.name = 'InvalidInput';
    this.problems = problems;
  }
}

/** The most problems one message lists (a hostile input may break every field). */
const MAX_PROBLEMS = 8;

/** class-validator names the bare property; say its full path and keep the rule. */
function withPath(path: string, property: string, message: string): string {
  if (message === `property ${property} should not exist`) return `${path} is not a known field`;
  const each = `each value in ${property} `;
  if (message.startsWith(each)) return `${path}: each value ${message.slice(each.length)}`;
  if (message.startsWith(`${property} `)) return `${path}${message.slice(property.length)}`;
  return `${path}: ${message}`;
}

/** Flattens class-validator's tree into `path message` lines. */
export function describeProblems(errors: ValidationError[], max = MAX_PROBLEMS): string[] {
  const out: string[] = [];
  const walk = (list: ValidationError[], prefix: string): void => {
    for (const e of list) {
      if (out.length >= max) return;
      const path = prefix === '' ? e.property : `${prefix}.${e.property}`;
      for (const message of Object.values(e.constraints ?? {})) {
        if (out.length >= max) return;
        // Two rules may say the same (e.g. "must be an object" from the type and nesting checks).
        const line = withPath(path, e.property, message);
        if (!out.includes(line)) out.push(line);
      }
      if (e.children && e.children.length > 0) walk(e.children, path);
    }
  };
  walk(errors, '');
  return out.length > 0 ? out : ['is not valid'];
}

export type Checked<T> = { ok: true; value: T } | { ok: false; problems: string[] };

/** Checks `value` against `cls`; never throws. */
export function checkDto<T extends object>(
  cls: DtoClass<T>,
  value: unknown,
  unknownFields: UnknownFields = 'strict',
): Checked<T> {
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    return { ok: false, problems: ['must be an object'] };
  let instance: T;
  try {
    instance = plainToInstance(cls, value, { enableImplicitConversion: false });
  } catch {
    return { ok: false, problems: ['is not valid'] };
  }
  const errors = validateSync(instance, validatorOptions(unknownFields));
  if (errors.length > 0) return { ok: false, problems: describeProblems(errors) };
  return { ok: true, value: instance };
}

/**
 * Checks `value` against `cls` and returns the typed instance, or throws `InvalidInput` whose
 * message starts with `what` (e.g. `agent hello`).
 */
export function parseDto<T extends object>(
  cls: DtoClass<T>,
  value: unknown,
  what: string,
  unknownFields: UnknownFields = 'strict',
): T {
  const r = checkDto(cls, value, unknownFields);
  if (!r.ok) throw new InvalidInput(what, r.problems);
  return r.value;
}
