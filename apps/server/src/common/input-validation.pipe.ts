import { ValidationPipe, type ArgumentMetadata, type PipeTransform } from '@nestjs/common';
import { describeProblems, ERROR_CODE, validatorOptions, type UnknownFields } from '@periscope/protocol';
import { getMetadataStorage, type ValidationError } from 'class-validator';

import { DomainError } from './domain-error';

/** What the exception factory hands back to `transform`, which knows the parameter. */
class Refused {
  constructor(readonly errors: ValidationError[]) {}
}

/** The fields a DTO class declares (its rules name them). */
function knownFields(metatype: ArgumentMetadata['metatype']): string[] {
  if (metatype === undefined) return [];
  const rules = getMetadataStorage().getTargetValidationMetadatas(metatype, '', true, false);
  return [...new Set(rules.map((r) => r.propertyName))];
}

const UNKNOWN = / is not a known field$/;

/** Rules on the kind of value: when one fails, the others (length, range) only add noise. */
const TYPE_RULES = new Set(['isString', 'isBoolean', 'isArray', 'isInt', 'isNumber', 'isObject', 'isIn']);

function typeFirst(errors: ValidationError[]): ValidationError[] {
  for (const e of errors) {
    const typeOnly = Object.entries(e.constraints ?? {}).filter(([rule]) => TYPE_RULES.has(rule));
    if (typeOnly.length > 0) e.constraints = Object.fromEntries(typeOnly);
    if (e.children) typeFirst(e.children);
  }
  return errors;
}

/** `field rule; field rule` in the words of the API: query parameters or body fields. */
export function describeRefusal(errors: ValidationError[], metadata: ArgumentMetadata): string {
  const where = metadata.type === 'query' ? 'query' : 'body';
  const allowed = knownFields(metadata.metatype).join(', ') || 'none';
  return describeProblems(typeFirst(errors))
    .map((p) => {
      if (!UNKNOWN.test(p)) return p;
      const field = p.replace(UNKNOWN, '');
      return where === 'query'
        ? `unknown query parameter ${JSON.stringify(field)}; allowed: ${allowed}`
        : `unknown field ${JSON.stringify(field)}; allowed: ${allowed}`;
    })
    .join('; ');
}

const lenientClasses = new WeakSet<object>();

/**
 * Marks a DTO whose unknown fields are dropped instead of refused: bodies that agents send, since
 * a newer agent may send fields an older server does not know (the tunnel's rule).
 */
export function LenientFields(): ClassDecorator {
  return (cls) => {
    lenientClasses.add(cls);
  };
}

function pipe(unknownFields: UnknownFields): ValidationPipe {
  return new ValidationPipe({
    ...validatorOptions(unknownFields),
    transform: true,
    exceptionFactory: (errors: ValidationError[]) => new Refused(errors),
  });
}

/**
 * The server's one check of HTTP input: every controller body and query is a DTO class whose
 * class-validator rules are applied here by Nest's ValidationPipe (unknown fields refused, values
 * turned into the class), and a refusal is the usual `400 {"error": "E_BAD_REQUEST", "message": …}`
 * naming each field and what it allows. Registered with `useGlobalPipes`, which Nest applies to
 * HTTP routes only (the tunnel gateway validates its messages itself).
 */
export class InputValidationPipe implements PipeTransform {
  private readonly strict = pipe('strict');
  private readonly lenient = pipe('lenient');

  async transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    const { metatype } = metadata;
    const whole = (metadata.type === 'body' || metadata.type === 'query') && metadata.data === undefined;
    // A JSON array or scalar where a DTO is expected (class-transformer would map over an array).
    if (whole && knownFields(metatype).length > 0 && value !== undefined && value !== null)
      if (typeof value !== 'object' || Array.isArray(value))
        throw new DomainError(ERROR_CODE.badRequest, `the request ${metadata.type} must be a JSON object`);
    const chosen = metatype !== undefined && lenientClasses.has(metatype) ? this.lenient : this.strict;
    try {
      return (await chosen.transform(value, metadata)) as unknown;
    } catch (err) {
      if (err instanceof Refused)
        throw new DomainError(ERROR_CODE.badRequest, describeRefusal(err.errors, metadata));
      throw err;
    }
  }
}
