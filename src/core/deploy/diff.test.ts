import { describe, expect, it } from 'vitest';
import { diffFields } from './diff.ts';

describe('diffFields', () => {
  it('walks objects to their leaves and says what was added, removed and changed', () => {
    const before = { id: 'v1', command: 'run', env: { VERSION: 'v1', OLD: 'x' }, healthcheck: { uri: '/health' }, groups: ['a'] };
    const after = { id: 'v2', command: 'run', env: { VERSION: 'v2', NEW: 'y' }, healthcheck: { uri: '/ready' }, groups: ['a', 'b'] };
    expect(diffFields(before, after)).toEqual([
      { field: 'env.NEW', kind: 'added', new: 'y' },
      { field: 'env.OLD', kind: 'removed', old: 'x' },
      { field: 'env.VERSION', kind: 'changed', old: 'v1', new: 'v2' },
      { field: 'groups', kind: 'changed', old: ['a'], new: ['a', 'b'] },
      { field: 'healthcheck.uri', kind: 'changed', old: '/health', new: '/ready' },
    ]);
  });

  it('lists every leaf of a new or dropped object', () => {
    expect(diffFields({ a: 1, gone: { x: 1 } }, { a: 1, fresh: { y: 2, z: { w: 3 } } })).toEqual([
      { field: 'fresh.y', kind: 'added', new: 2 },
      { field: 'fresh.z.w', kind: 'added', new: 3 },
      { field: 'gone.x', kind: 'removed', old: 1 },
    ]);
  });

  it('against nothing, everything is added; equal values give no change', () => {
    expect(diffFields(undefined, { command: 'x' })).toEqual([{ field: 'command', kind: 'added', new: 'x' }]);
    expect(diffFields({ id: 'a', timestamp: 1, x: [1] }, { id: 'b', timestamp: 2, x: [1] })).toEqual([]);
  });
});
