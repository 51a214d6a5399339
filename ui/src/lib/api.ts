// HTTP access to swapd: the API key (kept in localStorage) goes as a Bearer token.

import type { Hardware } from './types';

export const KEY_STORAGE = 'swapd.apiKey';

export function getKey(): string {
  try {
    return localStorage.getItem(KEY_STORAGE) ?? '';
  } catch {
    return '';
  }
}

export function setKey(key: string): void {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    /* private mode: key lives for this page only */
  }
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

let unauthorized: () => void = () => {};
export function onUnauthorized(fn: () => void): void {
  unauthorized = fn;
}

export async function request(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const key = getKey();
  if (key) headers.set('Authorization', `Bearer ${key}`);
  // credentials: 'omit' keeps the browser from answering a Basic challenge with its own dialog.
  const r = await fetch(path, { credentials: 'omit', ...init, headers });
  if (r.status === 401) unauthorized();
  return r;
}

/** The message of swapd's error envelope `{"error": {"message"}}`, or the body text. */
export async function errorMessage(r: Response): Promise<string> {
  const text = await r.text().catch(() => '');
  try {
    const body = JSON.parse(text);
    const msg = body?.error?.message ?? body?.error ?? body?.message;
    if (typeof msg === 'string') return msg;
  } catch {
    /* not JSON */
  }
  return text.trim() || `${r.status} ${r.statusText}`;
}

export async function getJSON<T>(path: string, init?: RequestInit): Promise<T> {
  const r = await request(path, init);
  if (!r.ok) throw new HttpError(r.status, await errorMessage(r));
  return (await r.json()) as T;
}

export async function post(path: string, body?: unknown): Promise<Response> {
  const r = await request(path, {
    method: 'POST',
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!r.ok) throw new HttpError(r.status, await errorMessage(r));
  return r;
}

export async function del(path: string): Promise<Response> {
  const r = await request(path, { method: 'DELETE' });
  if (!r.ok) throw new HttpError(r.status, await errorMessage(r));
  return r;
}

/** GET /api/hardware: the probes' snapshot and the placement view. */
export function getHardware(): Promise<Hardware> {
  return getJSON<Hardware>('/api/hardware');
}
