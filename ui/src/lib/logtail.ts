// Follow a text log stream (/logs/stream/...) into a LineRing, reconnecting with backoff.

import { request } from './api';
import { LineRing } from './ring';
import { readText } from './sse';

export async function followLog(
  path: string,
  ring: LineRing,
  changed: () => void,
  status: (text: string) => void,
  signal: AbortSignal,
): Promise<void> {
  for (let delay = 500; !signal.aborted; delay = Math.min(delay * 2, 5000)) {
    try {
      const r = await request(path, { signal });
      if (!r.ok || !r.body) throw new Error(`${r.status}`);
      status('streaming');
      ring.clear();
      for await (const text of readText(r.body)) {
        ring.pushText(text);
        changed();
      }
      status('stream ended — reconnecting');
    } catch (e) {
      if (signal.aborted) return;
      status(`disconnected (${e instanceof Error ? e.message : e}) — reconnecting`);
    }
    await new Promise((res) => setTimeout(res, delay));
  }
}
