/** Signs in as a dev-mode user of a running server and returns the session cookie (`name=value`). */
export async function devLogin(base: string, subject: string): Promise<string> {
  const res = await fetch(`${base}/api/auth/dev-login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ subject }),
  });
  if (res.status !== 204)
    throw new Error(`dev sign-in as ${subject} failed: HTTP ${res.status} ${await res.text()}`);
  return (res.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
}
