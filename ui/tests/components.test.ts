import { describe, expect, it } from 'vitest';
import { render } from '@testing-library/svelte';
import Badge from '../src/lib/Badge.svelte';
import LogView from '../src/lib/LogView.svelte';
import ModelActions from '../src/lib/ModelActions.svelte';
import Sparkline from '../src/lib/Sparkline.svelte';

describe('Badge', () => {
  it('shows the state with its class', () => {
    const { getByTestId } = render(Badge, { state: 'failed' });
    const el = getByTestId('badge');
    expect(el.textContent).toBe('failed');
    expect(el.dataset.state).toBe('failed');
    expect(el.classList.contains('failed')).toBe(true);
  });
});

describe('LogView', () => {
  it('renders only the visible window of 20 000 lines', () => {
    const lines = Array.from({ length: 20_000 }, (_, i) => `\x1b[32mline ${i}\x1b[0m`);
    const t0 = performance.now();
    const { container } = render(LogView, { lines, follow: false, height: 400 });
    const rows = container.querySelectorAll('.line');
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.length).toBeLessThan(100);
    expect(rows[0].textContent).toContain('line 0');
    expect(rows[0].querySelector('.fg-2')).not.toBeNull();
    expect(performance.now() - t0).toBeLessThan(2000);
  });
});

describe('Sparkline', () => {
  it('takes its box width and writes the latest and highest values', () => {
    const { container, getByTestId } = render(Sparkline, { values: [3, 9.25, 4], format: (v: number) => `${v} t/s` });
    const svg = container.querySelector('svg')!;
    expect(svg.getAttribute('width')).toBeNull(); // CSS width 100%: never wider than its card
    expect(svg.getAttribute('preserveAspectRatio')).toBe('none');
    expect(getByTestId('spark-now').textContent).toBe('now 4 t/s');
    expect(getByTestId('spark-max').textContent).toBe('max 9.25 t/s');
  });
  it('says when there is not enough data', () => {
    const { container } = render(Sparkline, { values: [5] });
    expect(container.querySelector('svg')).toBeNull();
    expect(container.textContent).toContain('not enough data');
  });
});

describe('ModelActions', () => {
  it('offers Sleep only to a ready model configured with sleep:', () => {
    const plain = render(ModelActions, { model: { id: 'a', state: 'ready', sleep_level: null } });
    expect(plain.queryByTestId('sleep-a')).toBeNull();
    expect(plain.getByTestId('stop-a')).toBeTruthy();
    const sleepy = render(ModelActions, { model: { id: 'b', state: 'ready', sleep_level: 1 } });
    expect(sleepy.getByTestId('sleep-b')).toBeTruthy();
    const stopped = render(ModelActions, { model: { id: 'c', state: 'stopped', sleep_level: 1 } });
    expect(stopped.queryByTestId('sleep-c')).toBeNull();
    expect(stopped.getByTestId('start-c')).toBeTruthy();
  });
});
