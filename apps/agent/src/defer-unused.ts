/**
 * Packages the agent's dependencies load at start for features the agent never uses, deferred
 * until first use. Imported first by `main.ts` (a side effect: it must run before anything
 * requires the packages named here).
 *
 * - `libphonenumber-js/max` (≈ 1.4 MiB of heap, its metadata): class-validator loads it for its
 *   `IsPhoneNumber` rule, which no Periscope DTO uses. class-validator itself (and with it every
 *   other rule) still loads at start: it is how the agent checks what the server sends.
 */
import { createRequire, Module } from 'node:module';

/**
 * Puts a stand-in for `request` (as `fromPackage` resolves it) into the module cache: the first
 * property read through it loads the real module, which then replaces the stand-in in the cache;
 * until then the package costs nothing. Only for modules whose exports are read as properties
 * (`require(x).fn`), which is how TypeScript-compiled CommonJS uses named imports. Answers false
 * (and changes nothing) when either cannot be resolved or the module is already loaded.
 */
export function deferModule(request: string, fromPackage: string): boolean {
  const here = createRequire(__filename);
  let file: string;
  try {
    file = createRequire(here.resolve(fromPackage)).resolve(request);
  } catch {
    return false;
  }
  const cache = here.cache;
  if (cache[file] !== undefined) return false;
  let real: Record<PropertyKey, unknown> | undefined;
  const load = (): Record<PropertyKey, unknown> => {
    if (real === undefined) {
      // eslint-disable-next-line @typescript-eslint/no-dynamic-delete -- the stand-in makes way for the real module
      delete cache[file];
      real = here(file) as Record<PropertyKey, unknown>;
    }
    return real;
  };
  const stub = new Module(file);
  stub.filename = file;
  stub.loaded = true;
  stub.exports = new Proxy(
    {},
    {
      get: (_t, key) => load()[key],
      has: (_t, key) => key in load(),
      ownKeys: () => Reflect.ownKeys(load()),
      getOwnPropertyDescriptor: (_t, key) => {
        const d = Reflect.getOwnPropertyDescriptor(load(), key);
        return d === undefined ? undefined : { ...d, configurable: true };
      },
    },
  );
  cache[file] = stub;
  return true;
}

deferModule('libphonenumber-js/max', 'class-validator');
