import { Type } from 'class-transformer';
import {
  ArrayMaxSize,
  IsBoolean,
  IsIn,
  IsInt,
  IsOptional,
  IsString,
  Matches,
  Max,
  MaxLength,
  Min,
  ValidateNested,
} from 'class-validator';
import { describe, expect, it } from 'vitest';

import { InvalidInput, checkDto, parseDto } from './validate';

class Inner {
  @IsBoolean() enabled!: boolean;
  @ArrayMaxSize(2) @IsIn(['a', 'b'], { each: true }) tiers!: string[];
}

class Outer {
  @IsString() @MaxLength(8) @Matches(/^[a-z]+$/) name!: string;
  @IsInt() @Min(1) @Max(10) count!: number;
  @IsOptional() @ValidateNested() @Type(() => Inner) inner?: Inner;
}

describe('parseDto', () => {
  it('returns a typed instance of good input', () => {
    const v = parseDto(Outer, { name: 'abc', count: 3, inner: { enabled: true, tiers: ['a'] } }, 'thing');
    expect(v).toBeInstanceOf(Outer);
    expect(v.inner).toBeInstanceOf(Inner);
    expect(v.inner?.tiers).toEqual(['a']);
  });

  it('names each bad field by its path and says what is allowed', () => {
    const r = checkDto(Outer, { name: 'ABC', count: 11, inner: { enabled: 'yes', tiers: ['c'] } });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.problems).toContain('count must not be greater than 10');
    expect(r.problems.some((p) => p.startsWith('name must match'))).toBe(true);
    expect(r.problems).toContain('inner.enabled must be a boolean value');
    expect(r.problems.some((p) => p.startsWith('inner.tiers: each value must be one of'))).toBe(true);
  });

  it('refuses unknown fields when strict and drops them when lenient', () => {
    expect(() => parseDto(Outer, { name: 'a', count: 1, extra: 1 }, 'thing')).toThrow(
      new InvalidInput('thing', ['extra is not a known field']),
    );
    const v = parseDto(Outer, { name: 'a', count: 1, extra: 1 }, 'thing', 'lenient');
    expect(v).not.toHaveProperty('extra');
  });

  it('refuses what is not an object, without throwing from checkDto', () => {
    for (const bad of [null, undefined, 'x', 3, [], [{ name: 'a', count: 1 }]])
      expect(checkDto(Outer, bad)).toEqual({ ok: false, problems: ['must be an object'] });
  });

  it('does not convert types implicitly', () => {
    const r = checkDto(Outer, { name: 'a', count: '3' });
    expect(r.ok).toBe(false);
  });

  it('bounds the number of problems it reports', () => {
    class Many {
      @IsString() a!: string;
      @IsString() b!: string;
    }
    const extra = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`x${i}`, i]));
    const r = checkDto(Many, extra);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problems.length).toBeLessThanOrEqual(8);
  });
});
