/** Same-origin JSON API client: every call sends the session cookie; errors become ApiError. */
import { CLIENT_ERROR } from '@periscope/protocol';

export interface ActiveSession {
  sessionId: string;
  cluster: string;
  startedAt: string;
  kind?: string;
}

/** An `{"error": "E_…", "message": …}` answer (or a network failure, status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** `activeSessions` of a 429 answer, when the server listed them. */
  get activeSessions(): ActiveSession[] {
    const list = this.details['activeSessions'];
    if (!Array.isArray(list)) return [];
    return list.filter(
      (s): s is ActiveSession =>
        typeof s === 'object' && s !== null && typeof (s as ActiveSession).sessionId === 'string',
    );
  }
}

/** Called on every 401 so the app can show the sign-in screen. */
let onUnauthorized: (() => void) | undefined;
export function setUnauthorizedHandler(fn: (() => void) | undefined): void {
  onUnauthorized = fn;
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      credentials: 'same-origin',
      headers:
        body === undefined
          ? { accept: 'application/json' }
          : { 'content-type': 'application/json', accept: 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch (err) {
    throw new ApiError(
      0,
      CLIENT_ERROR.network,
      `cannot reach the Periscope server (${err instanceof Error ? err.message : String(err)})`,
    );
  }
  const text = await res.text();
  let json: unknown = undefined;
  if (text !== '') {
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
  }
  if (!res.ok) {
    const o = (typeof json === 'object' && json !== null ? json : {}) as Record<string, unknown>;
    const code = typeof o['error'] === 'string' ? o['error'] : `HTTP_${res.status}`;
    const message =
      typeof o['message'] === 'string'
        ? o['message']
        : res.status === 404
          ? `${method} ${path} is not available on this server (404)`
          : `${method} ${path} answered ${res.status}`;
    const { error: _e, message: _m, ...details } = o;
    if (res.status === 401 && path !== '/api/auth/whoami') onUnauthorized?.();
    throw new ApiError(res.status, code, message, details);
  }
  return json as T;
}

export const get = <T>(path: string): Promise<T> => api<T>('GET', path);
export const post = <T>(path: string, body?: unknown): Promise<T> => api<T>('POST', path, body ?? {});
export const del = (path: string, body?: unknown): Promise<unknown> => api<unknown>('DELETE', path, body);

export const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));
