/**
 * Rules the DTOs share that class-validator does not have as such: an optional field that is
 * refused when present but wrong (null included), nested objects with one clear message, and
 * string-keyed maps.
 */
import { Transform, Type } from 'class-transformer';
import {
  ArrayMaxSize,
  IsArray,
  IsObject,
  ValidateBy,
  ValidateIf,
  ValidateNested,
  type ValidationOptions,
} from 'class-validator';

/** Kubernetes names and the ids Periscope puts on the wire. */
export const WIRE_PATTERN = {
  uuid: /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
  dnsLabel: /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/,
  dnsSubdomain: /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/,
} as const;

/** The access tiers, lowest first. */
export const ACCESS_TIERS = ['read', 'triage', 'write', 'maintain', 'admin'] as const;

/**
 * The field may be absent; when present (even as null) every other rule applies. (class-validator's
 * `IsOptional` also lets null through, which a peer could use to slip past a rule.)
 */
export function OptionalField(): PropertyDecorator {
  return ValidateIf((_o: object, v: unknown) => v !== undefined);
}

/** One nested object of class `cls`. */
export function Nested(cls: () => new () => object): PropertyDecorator {
  return (target, key) => {
    IsObject({ message: '$property must be an object' })(target, key);
    ValidateNested({ message: '$property must be an object' })(target, key);
    Type(cls)(target, key);
  };
}

/** A list of at most `max` objects of class `cls`. */
export function NestedList(cls: () => new () => object, max: number): PropertyDecorator {
  return (target, key) => {
    IsArray({ message: '$property must be a list' })(target, key);
    ArrayMaxSize(max)(target, key);
    ValidateNested({ each: true, message: 'must be an object' })(target, key);
    Type(cls)(target, key);
  };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * An object used as a map: at most `maxKeys` keys, each key passing `key` and each value passing
 * `value`; `what` completes the message ("must map …").
 */
export function IsMap(
  spec: { maxKeys: number; key?: (k: string) => boolean; value: (v: unknown) => boolean; what: string },
  options?: ValidationOptions,
): PropertyDecorator {
  return ValidateBy(
    {
      name: 'isMap',
      validator: {
        validate: (v: unknown) => {
          if (!isPlainObject(v)) return false;
          const entries = Object.entries(v);
          return (
            entries.length <= spec.maxKeys &&
            entries.every(([k, x]) => (spec.key === undefined || spec.key(k)) && spec.value(x))
          );
        },
        defaultMessage: () => `$property must map ${spec.what}, at most ${spec.maxKeys} entries`,
      },
    },
    options,
  );
}

/** Keeps the first of repeated list entries (a value that is not a list is left to the rules). */
export function Deduplicated(): PropertyDecorator {
  return Transform(({ value }: { value: unknown }) => (Array.isArray(value) ? [...new Set(value)] : value));
}

/** A string of `min` to `max` characters, said in one message (not one per rule). */
export function IsText(max: number, min = 1, options?: ValidationOptions): PropertyDecorator {
  const what = min > 0 ? `text of ${min} to ${max} characters` : `text of at most ${max} characters`;
  return ValidateBy(
    {
      name: 'isText',
      validator: {
        validate: (v: unknown) => typeof v === 'string' && v.length >= min && v.length <= max,
        defaultMessage: () => `$property must be ${what}`,
      },
    },
    options,
  );
}
