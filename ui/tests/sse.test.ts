import { describe, expect, it } from 'vitest';
import { SSEParser, readSSE } from '../src/lib/sse';

describe('SSEParser', () => {
  it('parses frames split across chunks', () => {
    const p = new SSEParser();
    expect(p.push('id: 1\nevent: model\ndata: {"id"')).toEqual([]);
    expect(p.push(':"a"}\n\nevent: queue\r\ndata: {}\r\n\r\n')).toEqual([
      { id: '1', event: 'model', data: '{"id":"a"}' },
      { id: undefined, event: 'queue', data: '{}' },
    ]);
  });
  it('joins multi-line data, ignores comments, defaults to message', () => {
    const p = new SSEParser();
    expect(p.push(': keepalive\n\ndata: a\ndata: b\n\n')).toEqual([{ id: undefined, event: 'message', data: 'a\nb' }]);
  });
  it('reads a fetch body stream', async () => {
    const enc = new TextEncoder();
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(enc.encode('event: snapshot\ndata: {"models":[]}\n'));
        c.enqueue(enc.encode('\ndata: [DONE]\n\n'));
        c.close();
      },
    });
    const frames = [];
    for await (const f of readSSE(body)) frames.push(f);
    expect(frames.map((f) => f.event)).toEqual(['snapshot', 'message']);
  });
});
