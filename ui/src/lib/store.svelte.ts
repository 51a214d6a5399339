// Live state of the swapd server, fed by /api/events (or by polling an older server).

import { errorMessage, getJSON, onUnauthorized, post, request } from './api';
import { readSSE, type SSEFrame } from './sse';
import type { ActivityRow, ModelInfo, RequestEvent } from './types';

export type Conn = 'connecting' | 'open' | 'down' | 'auth';

export const live = $state({
  models: {} as Record<string, ModelInfo>,
  conn: 'connecting' as Conn,
  /** true when the server has no /api/events: state comes from polling /v1/models + /running */
  legacy: false,
  needKey: false,
  /** why the key in use may not watch this swapd (403: it lacks the read scope) */
  scopeError: '',
  activity: [] as ActivityRow[],
  activityLoaded: false,
  inflight: {} as Record<string, RequestEvent>,
  lastError: '',
  /** the last rejected config reload's errors (`file:line:col: message`); empty after a good one */
  configErrors: [] as string[],
});

/** Read the last rejected reload's errors (GET /api/config/errors): an older swapd, or a key
 * that may not read it, leaves them as they were. */
export async function loadConfigErrors(): Promise<void> {
  try {
    const body = await getJSON<{ errors: string[] }>('/api/config/errors');
    if (body.errors.join('\n') !== live.configErrors.join('\n')) live.configErrors = body.errors;
  } catch {
    /* not available */
  }
}

export const ACTIVITY_CAP = 1000;

onUnauthorized(() => {
  live.needKey = true;
});

export function applyFrame(frame: SSEFrame): void {
  let data: any;
  try {
    data = JSON.parse(frame.data);
  } catch {
    return;
  }
  switch (frame.event) {
    case 'snapshot': {
      const next: Record<string, ModelInfo> = {};
      for (const m of data.models ?? []) next[m.id] = { ...m, _at: Date.now() };
      live.models = next;
      break;
    }
    case 'model':
      if (data?.id) live.models[data.id] = { ...live.models[data.id], ...data, _at: Date.now() };
      break;
    case 'queue':
      if (live.models[data.model]) live.models[data.model].queued = data.queued;
      break;
    case 'request':
      applyRequest(data as RequestEvent);
      break;
  }
}

export function applyRequest(ev: RequestEvent): void {
  const key = String(ev.id);
  if (ev.phase === 'start') {
    live.inflight[key] = ev;
    return;
  }
  const start = live.inflight[key];
  delete live.inflight[key];
  const row: ActivityRow = {
    id: ev.id ?? key,
    time: ev.time ?? Date.now() / 1000,
    model: ev.model ?? start?.model ?? '',
    path: ev.path ?? start?.path ?? '',
    status: ev.status ?? null,
    duration: ev.duration ?? null,
    ttfb: ev.ttfb ?? null,
    prompt_tokens: ev.prompt_tokens ?? null,
    completion_tokens: ev.completion_tokens ?? null,
    cached_tokens: ev.cached_tokens ?? null,
    tokens_per_second: ev.tokens_per_second ?? null,
  };
  if (live.activity.some((r) => String(r.id) === String(row.id))) return;
  live.activity = [row, ...live.activity].slice(0, ACTIVITY_CAP);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let controller: AbortController | null = null;
let started = false;
let wake: () => void = () => {};

/** Drop the current connection and connect again now (after a new API key, say). */
export function reconnect(): void {
  live.needKey = false;
  controller?.abort();
  wake();
}

export function start(): void {
  if (started) return;
  started = true;
  void loop();
  void loadActivity();
}

async function loop(): Promise<void> {
  let delay = 500;
  for (;;) {
    controller = new AbortController();
    try {
      const r = await request('/api/events', {
        signal: controller.signal,
        headers: { accept: 'text/event-stream' },
      });
      if (r.status === 401 || r.status === 403) {
        live.scopeError = r.status === 403 ? await errorMessage(r) : '';
        live.conn = 'auth';
        await new Promise<void>((res) => (wake = res));
        continue;
      }
      if (r.status === 404) {
        live.legacy = true;
        await poll();
        live.conn = 'open';
        delay = 500;
        await Promise.race([sleep(2000), new Promise<void>((res) => (wake = res))]);
        continue;
      }
      if (!r.ok || !r.body) throw new Error(`${r.status}`);
      live.legacy = false;
      live.scopeError = '';
      live.conn = 'open';
      delay = 500;
      if (!live.activityLoaded) void loadActivity();
      for await (const frame of readSSE(r.body)) applyFrame(frame);
      throw new Error('event stream ended');
    } catch (e) {
      if (controller.signal.aborted) continue;
      live.conn = 'down';
      live.lastError = String(e);
      await Promise.race([sleep(delay), new Promise<void>((res) => (wake = res))]);
      delay = Math.min(delay * 2, 5000);
    }
  }
}

/** Older servers: build ModelInfo from /v1/models and /running. */
async function poll(): Promise<void> {
  const [list, running] = await Promise.all([
    getJSON<{ data: any[] }>('/v1/models'),
    getJSON<{ running: any[] }>('/running'),
  ]);
  const next: Record<string, ModelInfo> = {};
  for (const rec of list.data) {
    const meta = rec.meta?.swapd ?? {};
    if (meta.type === 'alias') continue;
    next[rec.id] = {
      id: rec.id,
      name: rec.name,
      description: rec.description,
      aliases: meta.aliases ?? [],
      state: 'stopped',
    };
  }
  for (const r of running.running ?? []) {
    const id = r.model ?? r.id;
    next[id] = { ...(next[id] ?? { id }), ...r, id, state: r.state };
  }
  live.models = next;
}

export async function loadActivity(): Promise<void> {
  try {
    const body = await getJSON<{ activity: ActivityRow[] }>('/api/activity?limit=200');
    const seen = new Set(live.activity.map((r) => String(r.id)));
    const rows = [...live.activity, ...body.activity.filter((r) => !seen.has(String(r.id)))];
    rows.sort((a, b) => Number(b.time) - Number(a.time) || String(b.id).localeCompare(String(a.id)));
    live.activity = rows.slice(0, ACTIVITY_CAP);
    live.activityLoaded = true;
  } catch {
    /* older server: activity comes from events only */
  }
}

export async function act(id: string, action: 'start' | 'stop' | 'sleep' | 'wake'): Promise<void> {
  const enc = encodeURIComponent(id);
  if (live.models[id] && action === 'start') live.models[id].error = null;
  if (live.legacy) {
    if (action === 'start') {
      live.models[id] && (live.models[id].state = 'starting');
      await request(`/upstream/${enc}/`);
    } else if (action === 'stop') await post(`/api/models/unload/${enc}`);
    else throw new Error(`${action} needs a newer swapd`);
    await poll();
    return;
  }
  await post(`/api/models/${enc}/${action}`);
}

export async function stopAll(): Promise<void> {
  if (live.legacy) await post('/api/models/unload');
  else await post('/api/models/stop');
}
