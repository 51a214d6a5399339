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
  /** a readable name where `node` is an id (a Ray node: its `ray.node` label or ip) */
  node_label?: string | null;
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
  /** the sleep level from the model's `sleep:` config; null/absent: it cannot sleep */
  sleep_level?: number | null;
  /** where the placer put the model and what it needs (null: placement is off) */
  placement?: ModelPlacement | null;
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

/** A model's `placement` (/running, /api/models, events): bytes throughout. */
export interface ModelPlacement {
  /** null while a start waits (see blocked_by) */
  node: string | null;
  /** how `node` is shown: a Ray node's label, else `node` itself */
  node_label?: string | null;
  /** device indexes on `node`; -1 is system RAM */
  devices: number[];
  /** on each device */
  need_bytes: number;
  /** on each device (the most on any one) */
  held_bytes: number;
  measured_bytes: number;
  source: 'learned' | 'declared' | 'estimated' | 'unknown' | null;
  detail: string;
  /** busy models a start waits for */
  blocked_by: string[];
}

export interface DeviceModel {
  model: string;
  bytes: number;
  state: string;
}

/** One device of the placement view: a GPU, or a node's system RAM (index -1). */
export interface PlacementDevice {
  index: number;
  kind: 'gpu' | 'ram';
  name: string;
  total: number;
  /** by every process */
  used: number;
  /** held by swapd's engines */
  reserved: number;
  free: number;
  models: DeviceModel[];
}

export interface PlacementNode {
  node: string;
  local: boolean;
  /** "ray" for a node of the Ray cluster (`node` is then its id) */
  cluster?: string | null;
  /** a readable name where `node` is an id */
  label?: string | null;
  driver_version: string | null;
  sources: { name: string; ok: boolean; error: string | null }[];
  devices: PlacementDevice[];
}

export interface PlacementView {
  active: boolean;
  headroom: number;
  captured_at: number | null;
  nodes: PlacementNode[];
}

/** GET /api/hardware (only the parts the UI reads). */
export interface Hardware {
  captured_at: number;
  placement?: PlacementView;
}
