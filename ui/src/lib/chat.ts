// OpenAI streaming chat: parse `data:` frames into content, the model's reasoning, and swapd's
// own load progress (`sendLoadingState`: reasoning_content frames whose chunk id is `swapd-loading`).
import { request, errorMessage, HttpError } from './api';
import { readSSE } from './sse';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface Delta {
  content?: string;
  /** the model's own reasoning (reasoning_content / reasoning) */
  reasoning?: string;
  /** swapd's progress while it loads the model */
  loading?: string;
}

export const LOADING_ID = 'swapd-loading';

export function parseChunk(data: string): Delta | null {
  if (data.trim() === '[DONE]') return null;
  try {
    const body = JSON.parse(data);
    if (body.error) throw new Error(body.error.message ?? JSON.stringify(body.error));
    const d = body.choices?.[0]?.delta ?? body.choices?.[0]?.message ?? {};
    if (body.id === LOADING_ID) return { loading: typeof d.reasoning_content === 'string' ? d.reasoning_content : '' };
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
