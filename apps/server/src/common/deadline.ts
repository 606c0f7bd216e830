/** A step that did not finish in time; the step itself may still be running. */
export class DeadlineError extends Error {
  constructor(
    readonly what: string,
    readonly ms: number,
  ) {
    super(`${what} did not finish within ${ms} ms`);
    this.name = 'DeadlineError';
  }
}

/**
 * Resolves or rejects like `p`, or rejects with a DeadlineError after `ms`, whichever comes
 * first. Does not stop `p` (callers give it its own deadline when it holds resources).
 */
export function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new DeadlineError(what, ms));
    }, ms);
    timer.unref();
  });
  return Promise.race([p, expired]).finally(() => {
    clearTimeout(timer);
  });
}

/** How a promise settled within a deadline, never rejecting. */
export function settleWithin(p: Promise<unknown>, ms: number): Promise<'ok' | 'failed' | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => {
      resolve('timeout');
    }, ms);
    timer.unref();
  });
  const settled = p.then(
    () => 'ok' as const,
    () => 'failed' as const,
  );
  return Promise.race([settled, expired]).finally(() => {
    clearTimeout(timer);
  });
}
