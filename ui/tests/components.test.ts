import { describe, expect, it } from 'vitest';
import { render } from '@testing-library/svelte';
import Badge from '../src/lib/Badge.svelte';
import LogView from '../src/lib/LogView.svelte';

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
