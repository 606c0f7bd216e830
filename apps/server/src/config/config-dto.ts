/**
 * Configuration files (auth, clusters) checked by class-validator DTOs, like every other input,
 * with the problems in the shape the start-up error lists: the file and the field path
 * (`clusters[2].arn`), the value, and what is allowed. Each rule's message is that "allowed" text.
 */
import type { ConfigProblem } from '@periscope/config';
import { validatorOptions } from '@periscope/protocol';
import { plainToInstance, Transform, Type } from 'class-transformer';
import {
  getMetadataStorage,
  IsOptional,
  ValidateBy,
  ValidateIf,
  ValidateNested,
  validateSync,
  type ValidationArguments,
  type ValidationError,
} from 'class-validator';

export function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export const show = (v: unknown): string => (typeof v === 'string' ? v : JSON.stringify(v));

/** Rule names start with this, so that a file's own rule wins over class-validator's generic ones. */
const RULE = 'config:';

/**
 * One rule whose message is what is allowed. Absent values (undefined, null: a YAML key without a
 * value) pass unless `required`; `allowed` may depend on the value.
 */
export function Rule(
  allowed: string | ((value: unknown) => string),
  test: (value: unknown, object: object) => boolean,
  opts: { required?: boolean } = {},
): PropertyDecorator {
  const text = (v: unknown): string => (typeof allowed === 'string' ? allowed : allowed(v));
  return ValidateBy({
    name: `${RULE}${typeof allowed === 'string' ? allowed : test.toString().slice(0, 40)}`,
    validator: {
      validate: (v: unknown, a?: ValidationArguments) =>
        v === undefined || v === null ? opts.required !== true : test(v, a?.object ?? {}),
      defaultMessage: (a?: ValidationArguments) => text(a?.value),
    },
  });
}

/** Present, and not empty. */
export function Required(allowed = 'a value'): PropertyDecorator {
  return Rule(allowed, (v) => v !== '', { required: true });
}

/** An empty string in the file means "not set". */
export function EmptyIsUnset(): PropertyDecorator {
  return Transform(({ value }: { value: unknown }) => (value === '' ? undefined : value));
}

/** Only checked when `when` holds for the object (e.g. fields of one backend). */
export function When(when: (o: Record<string, unknown>) => boolean): PropertyDecorator {
  return ValidateIf((o: object) => when(o as Record<string, unknown>));
}

export const isText =
  (max: number, pattern?: RegExp) =>
  (v: unknown): boolean =>
    typeof v === 'string' && v.length <= max && (pattern === undefined || pattern.test(v));

export const isTextList =
  (maxItems: number, maxChars: number) =>
  (v: unknown): boolean =>
    Array.isArray(v) && v.length <= maxItems && v.every(isText(maxChars));

export const isWhole =
  (min: number, max: number) =>
  (v: unknown): boolean =>
    typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

export const isBool = (v: unknown): boolean => typeof v === 'boolean';

/** A nested section (a YAML mapping) of class `cls`; absent or null means its defaults. */
export function Section(cls: () => new () => object, allowed = 'a mapping'): PropertyDecorator {
  return (target, key) => {
    IsOptional()(target, key);
    Rule(allowed, isRecord)(target, key);
    ValidateNested()(target, key);
    Type(cls)(target, key);
  };
}

/** A list of mappings of class `cls`. */
export function SectionList(
  cls: () => new () => object,
  max: number,
  allowed: string,
  opts: { required?: boolean } = {},
): PropertyDecorator {
  return (target, key) => {
    Rule(allowed, (v) => Array.isArray(v) && v.length <= max, opts)(target, key);
    ValidateNested({ each: true })(target, key);
    Type(cls)(target, key);
  };
}

function knownFields(target: object | undefined): string[] {
  if (target === undefined) return [];
  const rules = getMetadataStorage().getTargetValidationMetadatas(target.constructor, '', true, false);
  return [...new Set(rules.map((r) => r.propertyName))];
}

/** `a.b[0].c` from class-validator's property chain. */
function join(prefix: string, property: string): string {
  if (/^\d+$/.test(property)) return `${prefix}[${property}]`;
  return prefix === '' ? property : `${prefix}.${property}`;
}

/** The one message of a field: the file's own rule when it failed, else class-validator's. */
function pick(constraints: Record<string, string>): [string, string] | undefined {
  const entries = Object.entries(constraints);
  return entries.find(([k]) => k.startsWith(RULE)) ?? entries[0];
}

/**
 * Checks `doc` (parsed YAML) against `cls`, unknown keys refused. Answers the typed instance when
 * there is no problem.
 */
export function checkConfig<T extends object>(
  cls: new () => T,
  doc: unknown,
  file: string,
): { value: T | undefined; problems: ConfigProblem[] } {
  const instance = plainToInstance(cls, doc, { enableImplicitConversion: false });
  const errors = validateSync(instance, {
    ...validatorOptions('strict'),
    validationError: { target: true, value: true },
  });
  const problems: ConfigProblem[] = [];
  const walk = (list: ValidationError[], prefix: string): void => {
    for (const e of list) {
      const path = join(prefix, e.property);
      const setting = `${file}: ${path}`;
      const c = pick(e.constraints ?? {});
      if (c?.[0] === 'whitelistValidation')
        problems.push({ setting, allowed: `one of the keys ${knownFields(e.target).join(', ')}` });
      else if (c !== undefined)
        problems.push({
          setting,
          ...(e.value === undefined || e.value === null ? {} : { value: show(e.value) }),
          allowed: c[1],
        });
      if (e.children && e.children.length > 0) walk(e.children, path);
    }
  };
  walk(errors, '');
  return { value: problems.length === 0 ? instance : undefined, problems };
}
