/** A UUIDv7: time-ordered, so request ids sort by when they were made. */
export function newRid(now: number = Date.now()): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  let t = now;
  for (let i = 5; i >= 0; i--) {
    b[i] = t % 256;
    t = Math.floor(t / 256);
  }
  b[6] = ((b[6] ?? 0) & 0x0f) | 0x70;
  b[8] = ((b[8] ?? 0) & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * What a request id may look like wherever one is accepted (the tunnel's requests and streams)
 * and sent on (the apiserver's `Audit-ID` header): 8 to 64 letters, digits or dashes, so it is
 * always a safe HTTP header value and a safe log field.
 */
export const REQUEST_ID_PATTERN = /^[0-9A-Za-z-]{8,64}$/;

export function isRequestId(v: unknown): v is string {
  return typeof v === 'string' && REQUEST_ID_PATTERN.test(v);
}
