import { describe, expect, it } from 'vitest';
import { render } from '@testing-library/svelte';
import GpuBars from '../src/lib/GpuBars.svelte';
import { deviceRows, gib, segments, where } from '../src/lib/gpus';
import type { PlacementDevice, PlacementNode } from '../src/lib/types';

const GIB = 2 ** 30;

function gpu(index: number, over: Partial<PlacementDevice> = {}): PlacementDevice {
  return { index, kind: 'gpu', name: 'Fake H100', total: 80 * GIB, used: 0, reserved: 0, free: 80 * GIB, models: [], ...over };
}

const ram: PlacementDevice = { index: -1, kind: 'ram', name: 'system RAM', total: 64 * GIB, used: 8 * GIB, reserved: 0, free: 56 * GIB, models: [] };

function node(name: string, devices: PlacementDevice[]): PlacementNode {
  return { node: name, local: true, driver_version: null, sources: [], devices };
}

const busy = gpu(1, {
  used: 40 * GIB,
  reserved: 30 * GIB,
  free: 40 * GIB,
  models: [
    { model: 'qwen', bytes: 20 * GIB, state: 'ready' },
    { model: 'llama', bytes: 10 * GIB, state: 'starting' },
  ],
});

describe('segments', () => {
  it('splits a device into each model, other processes and free', () => {
    expect(segments(busy).map((s) => [s.kind, s.label, s.bytes / GIB, s.pct])).toEqual([
      ['model', 'qwen', 20, 25],
      ['model', 'llama', 10, 12.5],
      ['other', 'other processes', 10, 12.5],
      ['free', 'free', 40, 50],
    ]);
  });
  it('scales an over-committed device to a full bar', () => {
    const over = gpu(0, { total: 10 * GIB, used: 12 * GIB, reserved: 12 * GIB, models: [{ model: 'big', bytes: 12 * GIB, state: 'starting' }] });
    const parts = segments(over);
    expect(parts.map((s) => [s.kind, s.pct])).toEqual([['model', 100]]);
  });
  it('names where a model sits as swapd ps does', () => {
    const p = { node: 'a', devices: [0, 1], need_bytes: 1, held_bytes: 1, measured_bytes: 0, source: 'declared' as const, detail: '', blocked_by: [] };
    expect(where(p)).toBe('a:0,1');
    expect(where({ ...p, devices: [-1] })).toBe('a:RAM');
    expect(where({ ...p, devices: [] })).toBe('a:RAM');
    expect(where({ ...p, node: null, devices: [] })).toBeNull();
    expect(where(null)).toBeNull();
    expect(gib(14.04 * GIB)).toBe('14.0 GiB');
  });
  it('shows every GPU and only the RAM that holds a model', () => {
    const rows = deviceRows([node('a', [gpu(0), ram]), node('b', [{ ...ram, models: [{ model: 'cpu', bytes: GIB, state: 'ready' }] }])]);
    expect(rows.map((r) => r.key)).toEqual(['a:0', 'b:RAM']);
  });
  it('shows a Ray node by its label, keyed by its id', () => {
    const id = 'f'.repeat(56);
    const rows = deviceRows([{ ...node(id, [gpu(0)]), local: false, cluster: 'ray', label: 'big-box' }]);
    expect(rows.map((r) => [r.key, r.name])).toEqual([[`${id}:0`, 'big-box:0']]);
    const p = { node: id, node_label: 'big-box', devices: [1], need_bytes: 1, held_bytes: 1, measured_bytes: 0, source: 'declared' as const, detail: '', blocked_by: [] };
    expect(where(p)).toBe('big-box:1');
    const { getByTestId } = render(GpuBars, { nodes: [{ ...node(id, [gpu(0)]), label: 'big-box' }] });
    expect(getByTestId(`gpu-${id}:0`).textContent).toContain('big-box:0');
  });
});

describe('GpuBars', () => {
  it('draws a bar per device with each model labelled', () => {
    const { getByTestId, queryByTestId } = render(GpuBars, { nodes: [node('a', [gpu(0), busy, ram])] });
    expect(queryByTestId('gpu-a:RAM')).toBeNull();
    const bar = getByTestId('gpu-a:1');
    expect(bar.textContent).toContain('Fake H100');
    const models = [...bar.querySelectorAll<HTMLElement>('[data-testid="seg-model"]')];
    expect(models.map((m) => m.dataset.label)).toEqual(['qwen', 'llama']);
    expect(models[0].style.width).toBe('25%');
    expect(models[0].textContent).toContain('qwen 20.0 GiB');
    expect(models[1].title).toBe('llama (starting): 10.0 GiB');
    expect(bar.querySelector<HTMLElement>('[data-testid="seg-other"]')?.style.width).toBe('12.5%');
    expect(getByTestId('gpu-a:0').querySelectorAll('[data-testid="seg-model"]').length).toBe(0);
  });
  it('draws nothing without devices', () => {
    const { container } = render(GpuBars, { nodes: [] });
    expect(container.querySelector('[data-testid="gpu-bars"]')).toBeNull();
  });
});
