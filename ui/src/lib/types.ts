export type ModelState = 'stopped' | 'starting' | 'ready' | 'stopping' | 'failed' | 'sleeping';

export interface Progress {
  phase: string;
  elapsed: number;
  detail?: string | null;
}

export interface ModelInfo {
  id: string;
  name?: string | null;
  description?: string | null;
  aliases?: string[];
  group?: string | null;
  driver?: string | null;
  state: ModelState;
  node?: string | null;
  pid?: number | null;
  container?: string | null;
  port?: number | null;
  uptime?: number | null;
  inflight?: number;
  queued?: number;
  last_use?: number | null;
  ttl?: number | null;
  ttl_left?: number | null;
  progress?: Progress | null;
  error?: string | null;
  unlisted?: boolean;
  /** Date.now() when this info arrived (set by the UI, for ticking uptime / TTL left) */
  _at?: number;
}

export interface ActivityRow {
  id: string | number;
  time: number | string;
  model: string;
  path: string;
  status: number | null;
  duration: number | null;
  ttfb: number | null;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  cached_tokens: number | null;
  tokens_per_second: number | null;
}

export interface RequestEvent extends Partial<ActivityRow> {
  phase: 'start' | 'end';
}
