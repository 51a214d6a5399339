// OpenAI streaming chat: parse `data:` frames into content and reasoning (load progress) deltas.
import { request, errorMessage, HttpError } from './api';
import { readSSE } from './sse';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface Delta {
  content?: string;
  reasoning?: string;
}

export function parseChunk(data: string): Delta | null {
  if (data.trim() === '[DONE]') return null;
  try {
    const body = JSON.parse(data);
    if (body.error) throw new Error(body.error.message ?? JSON.stringify(body.error));
    const d = body.choices?.[0]?.delta ?? body.choices?.[0]?.message ?? {};
    return {
      content: typeof d.content === 'string' ? d.content : undefined,
      reasoning:
        typeof d.reasoning_content === 'string' ? d.reasoning_content : typeof d.reasoning === 'string' ? d.reasoning : undefined,
    };
  } catch (e) {
    if (e instanceof SyntaxError) return {};
    throw e;
  }
}

export async function* streamChat(
  model: string,
  messages: ChatMessage[],
  opts: { maxTokens?: number; signal?: AbortSignal } = {},
): AsyncGenerator<Delta> {
  const r = await request('/v1/chat/completions', {
    method: 'POST',
    signal: opts.signal,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages, stream: true, ...(opts.maxTokens ? { max_tokens: opts.maxTokens } : {}) }),
  });
  if (!r.ok || !r.body) throw new HttpError(r.status, await errorMessage(r));
  for await (const frame of readSSE(r.body)) {
    const delta = parseChunk(frame.data);
    if (delta === null) return;
    yield delta;
  }
}
