/**
 * Where to send the browser after sign-in: only a same-site relative path ("/clusters/lab?x=1").
 * Anything else — absolute URLs, protocol-relative "//host", backslash tricks, control
 * characters — becomes "/", so the login endpoint can never be used as an open redirect.
 */
export function safeReturnTo(raw: unknown): string {
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > 2048) return '/';
  if (!raw.startsWith('/') || raw.startsWith('//') || raw.startsWith('/\\')) return '/';
  // Browsers treat "\" like "/" and drop tabs and newlines inside URLs; refuse both outright.
  // eslint-disable-next-line no-control-regex
  if (/[\\\u0000-\u001f\u007f]/.test(raw)) return '/';
  try {
    const base = new URL('https://periscope.invalid');
    const url = new URL(raw, base);
    if (url.origin !== base.origin) return '/';
    return `${url.pathname}${url.search}${url.hash}`;
  } catch {
    return '/';
  }
}
