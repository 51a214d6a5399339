import { describe, expect, it } from 'vitest';
import { ansiSegments, stripAnsi } from '../src/lib/ansi';
import { LineRing } from '../src/lib/ring';
import { parseChunk } from '../src/lib/chat';
import { filterModels } from '../src/lib/models';
import { duration, ttlText } from '../src/lib/format';
import type { ModelInfo } from '../src/lib/types';

describe('ansi', () => {
  it('turns SGR codes into classes', () => {
    expect(ansiSegments('plain \x1b[1;31merror\x1b[0m done')).toEqual([
      { text: 'plain ', cls: '' },
      { text: 'error', cls: 'fg-1 bold' },
      { text: ' done', cls: '' },
    ]);
    expect(ansiSegments('\x1b[92mok\x1b[39m')).toEqual([{ text: 'ok', cls: 'fg-10' }]);
  });
  it('skips 256-colour arguments and drops other escapes', () => {
    expect(ansiSegments('\x1b[38;5;196mred\x1b[m\x1b[2K!')).toEqual([
      { text: 'red', cls: '' },
      { text: '!', cls: '' },
    ]);
    expect(stripAnsi('\x1b[33mwarn\x1b[0m')).toBe('warn');
  });
});

describe('LineRing', () => {
  it('keeps at most cap lines and counts the dropped ones', () => {
    const r = new LineRing(1000);
    for (let i = 0; i < 50; i++) r.pushText(Array.from({ length: 100 }, (_, j) => `line ${i * 100 + j}`).join('\n') + '\n');
    expect(r.lines.length).toBe(1000);
    expect(r.dropped).toBe(4000);
    expect(r.lines[999]).toBe('line 4999');
  });
  it('holds a partial line until its newline arrives', () => {
    const r = new LineRing();
    r.pushText('hel');
    expect(r.lines).toEqual([]);
    r.pushText('lo\r\nwor');
    r.pushText('ld\n');
    expect(r.lines).toEqual(['hello', 'world']);
  });
});

describe('chat chunks', () => {
  it('reads content and reasoning', () => {
    expect(parseChunk('{"choices":[{"delta":{"content":"hi"}}]}')).toEqual({ content: 'hi', reasoning: undefined });
    expect(parseChunk('{"choices":[{"delta":{"reasoning_content":"step 1"}}]}')?.reasoning).toBe('step 1');
    expect(parseChunk(' [DONE]')).toBeNull();
  });
  it("keeps swapd's loading progress apart from the model's reasoning", () => {
    const loading = '{"id":"swapd-loading","choices":[{"delta":{"reasoning_content":"swapd: loading model m\\n"}}]}';
    expect(parseChunk(loading)).toEqual({ loading: 'swapd: loading model m\n' });
    const thought = '{"id":"chatcmpl-1","choices":[{"delta":{"reasoning_content":"Let me think"}}]}';
    expect(parseChunk(thought)).toEqual({ content: undefined, reasoning: 'Let me think' });
  });
  it('raises an in-stream error', () => {
    expect(() => parseChunk('{"error":{"message":"model failed"}}')).toThrow('model failed');
  });
});

describe('filterModels', () => {
  const models: ModelInfo[] = [
    { id: 'qwen', state: 'ready', aliases: ['gpt-4o-mini'] },
    { id: 'embed', state: 'stopped', unlisted: true },
    { id: 'llama', state: 'stopped', description: 'Meta 8B' },
  ];
  it('hides unlisted unless asked, searches aliases and description, sorts', () => {
    expect(filterModels(models, '', false).map((m) => m.id)).toEqual(['llama', 'qwen']);
    expect(filterModels(models, '', true).map((m) => m.id)).toEqual(['embed', 'llama', 'qwen']);
    expect(filterModels(models, 'GPT-4o', false).map((m) => m.id)).toEqual(['qwen']);
    expect(filterModels(models, 'meta', false).map((m) => m.id)).toEqual(['llama']);
  });
});

it('formats durations', () => {
  expect(duration(0.25)).toBe('250 ms');
  expect(duration(3.21)).toBe('3.2 s');
  expect(duration(125)).toBe('2m 5s');
  expect(duration(120)).toBe('2m');
  expect(duration(3600)).toBe('1h');
  expect(ttlText(120, 112)).toBe('ttl 2m · 1m 52s left');
  expect(ttlText(300, null)).toBe('ttl 5m');
  expect(duration(null)).toBe('—');
});
