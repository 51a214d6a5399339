import { beforeEach, describe, expect, it } from 'vitest';
import { ACTIVITY_CAP, applyFrame, live } from '../src/lib/store.svelte';

const frame = (event: string, data: unknown) => ({ event, data: JSON.stringify(data) });

describe('event handling', () => {
  beforeEach(() => {
    live.models = {};
    live.activity = [];
    live.inflight = {};
  });

  it('snapshot replaces, model updates merge, queue sets counts', () => {
    applyFrame(frame('snapshot', { models: [{ id: 'a', state: 'stopped', aliases: ['x'] }, { id: 'b', state: 'ready' }] }));
    expect(Object.keys(live.models)).toEqual(['a', 'b']);
    applyFrame(frame('model', { id: 'a', state: 'starting', progress: { phase: 'loading', elapsed: 1 } }));
    expect(live.models.a.state).toBe('starting');
    expect(live.models.a.aliases).toEqual(['x']);
    applyFrame(frame('queue', { model: 'a', queued: 3 }));
    expect(live.models.a.queued).toBe(3);
    applyFrame(frame('snapshot', { models: [{ id: 'c', state: 'failed', error: 'boom' }] }));
    expect(Object.keys(live.models)).toEqual(['c']);
  });

  it('request start/end moves a request from in-flight to activity, once', () => {
    applyFrame(frame('request', { phase: 'start', id: 'r1', model: 'a', path: '/v1/chat/completions' }));
    expect(Object.keys(live.inflight)).toEqual(['r1']);
    const end = { phase: 'end', id: 'r1', status: 200, duration: 0.5, tokens_per_second: 42 };
    applyFrame(frame('request', end));
    applyFrame(frame('request', end));
    expect(live.inflight).toEqual({});
    expect(live.activity).toHaveLength(1);
    expect(live.activity[0]).toMatchObject({ id: 'r1', model: 'a', path: '/v1/chat/completions', status: 200, tokens_per_second: 42 });
  });

  it('caps the activity list and ignores bad JSON', () => {
    for (let i = 0; i < ACTIVITY_CAP + 50; i++) applyFrame(frame('request', { phase: 'end', id: i, model: 'a' }));
    expect(live.activity).toHaveLength(ACTIVITY_CAP);
    expect(live.activity[0].id).toBe(ACTIVITY_CAP + 49);
    applyFrame({ event: 'model', data: '{not json' });
  });
});
