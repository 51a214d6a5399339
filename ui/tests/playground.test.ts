import { afterEach, describe, expect, it, vi } from 'vitest';
import { cleanup, fireEvent, render, waitFor } from '@testing-library/svelte';
import Playground from '../src/pages/Playground.svelte';
import { live } from '../src/lib/store.svelte';

const sse = (frames: unknown[]) =>
  new Response(frames.map((f) => `data: ${JSON.stringify(f)}\n\n`).join('') + 'data: [DONE]\n\n', {
    headers: { 'content-type': 'text/event-stream' },
  });

async function ask(text: string) {
  live.models = { m: { id: 'm', state: 'ready' } };
  const view = render(Playground);
  await waitFor(() => expect((view.getByTestId('pg-model') as HTMLSelectElement).value).toBe('m'));
  await fireEvent.input(view.getByTestId('pg-input'), { target: { value: text } });
  await fireEvent.click(view.getByTestId('pg-send'));
  return view;
}

describe('Playground', () => {
  afterEach(() => {
    cleanup();
    vi.unstubAllGlobals();
  });

  it("shows an engine's error with its newlines", async () => {
    const message = 'model m failed to start:\nCUDA error: out of memory\n  at load_tensors';
    vi.stubGlobal('fetch', vi.fn(async () => new Response(JSON.stringify({ error: { message } }), { status: 503 })));
    const view = await ask('hi');
    const error = await view.findByTestId('pg-error');
    expect(error.tagName).toBe('PRE'); // keeps line breaks
    expect(error.textContent).toBe(message);
  });

  it("renders the reply as Markdown, loading progress apart from the model's reasoning", async () => {
    vi.stubGlobal('fetch', vi.fn(async () => sse([
      { id: 'swapd-loading', choices: [{ delta: { reasoning_content: 'swapd: loading model m\n' } }] },
      { id: 'swapd-loading', choices: [{ delta: { reasoning_content: '\nDone! (1.50s)\n' } }] },
      { id: 'c1', choices: [{ delta: { reasoning_content: 'The user wants code.' } }] },
      { id: 'c1', choices: [{ delta: { content: 'Here:\n\n```sh\necho "<b>hi</b>"\n```' } }] },
    ])));
    const view = await ask('code please');
    await waitFor(() => expect(view.container.querySelector('pre.md-code')).not.toBeNull());
    expect(view.container.querySelector('pre.md-code')!.textContent).toBe('echo "<b>hi</b>"');
    expect(view.container.querySelector('.content b')).toBeNull();
    expect(view.getByTestId('pg-loading').textContent).toContain('model loaded (1.50s)');
    expect(view.getByTestId('pg-loading').textContent).not.toContain('The user wants code.');
    expect(view.getByTestId('pg-reasoning').textContent).toContain('The user wants code.');
    expect(view.getByTestId('pg-reasoning').textContent).not.toContain('loading model');
  });
});
