// The placement view as bars: per device, what swapd's models hold, what other processes use,
// and what is free; and where a model sits, in the `node:gpu` spelling of `swapd ps`.

import type { ModelPlacement, PlacementDevice, PlacementNode } from './types';

export interface Segment {
  kind: 'model' | 'other' | 'free';
  /** the model's id, "other processes" or "free" */
  label: string;
  bytes: number;
  /** share of the bar, 0..100 */
  pct: number;
  state?: string;
}

export interface DeviceRow {
  /** `a:0`, or `a:RAM` for a node's system RAM */
  key: string;
  /** the key as shown: a Ray node's label in place of its id */
  name: string;
  device: PlacementDevice;
}

const GIB = 2 ** 30;

export function gib(bytes: number): string {
  return `${(bytes / GIB).toFixed(1)} GiB`;
}

export function deviceKey(node: string, index: number): string {
  return `${node}:${index < 0 ? 'RAM' : index}`;
}

/** Where a model sits: `a:0,1`, `a:RAM` for a CPU engine, null while it is not placed; a Ray
 * node by its label. */
export function where(p: ModelPlacement | null | undefined): string | null {
  if (!p || !p.node) return null;
  const node = p.node_label || p.node;
  return `${node}:${p.devices.map((i) => (i < 0 ? 'RAM' : String(i))).join(',') || 'RAM'}`;
}

/** The devices worth a bar: every GPU, and a node's RAM when a model sits in it. */
export function deviceRows(nodes: PlacementNode[]): DeviceRow[] {
  return nodes.flatMap((n) =>
    n.devices
      .filter((d) => d.kind === 'gpu' || d.models.length > 0)
      .map((d) => ({
        key: deviceKey(n.node, d.index),
        name: deviceKey(n.label || n.node, d.index),
        device: d,
      })),
  );
}

/** A device's bar: each model's share, then other processes' use, then free memory. A bar
 * whose parts add up to more than the device (an over-committed start) is scaled to fit. */
export function segments(d: PlacementDevice): Segment[] {
  const parts: Omit<Segment, 'pct'>[] = d.models
    .filter((m) => m.bytes > 0)
    .map((m) => ({ kind: 'model', label: m.model, bytes: m.bytes, state: m.state }));
  const held = parts.reduce((sum, p) => sum + p.bytes, 0);
  const other = Math.max(0, d.used - Math.max(d.reserved, held));
  if (other > 0) parts.push({ kind: 'other', label: 'other processes', bytes: other });
  const free = Math.max(0, d.total - held - other);
  if (free > 0) parts.push({ kind: 'free', label: 'free', bytes: free });
  const scale = Math.max(d.total, held + other) || 1;
  return parts.map((p) => ({ ...p, pct: (p.bytes / scale) * 100 }));
}

/** A stable colour per model name. */
export function modelColour(model: string): string {
  let h = 0;
  for (const c of model) h = (h * 31 + c.charCodeAt(0)) % 360;
  return `hsl(${h} 55% 50%)`;
}
