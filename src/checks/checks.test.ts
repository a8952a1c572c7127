import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { AcceptanceCheckSpec, Deploy, FledgeRequest } from '../core/model.ts';
import { createCommandCheck } from './command/index.ts';
import { createHttpCheck } from './http/index.ts';
import { loadServerChecks } from './index.ts';
import type { CheckContext } from './types.ts';

const spec = (type: AcceptanceCheckSpec['type'], options: Record<string, unknown>): AcceptanceCheckSpec => ({
  name: 'c',
  type,
  intervalSeconds: 1,
  timeoutSeconds: 5,
  failOnError: true,
  options,
});

const context = (): CheckContext => ({
  request: { id: 'web' } as FledgeRequest,
  deploy: { id: 'd2' } as Deploy,
  progress: {} as CheckContext['progress'],
  step: 2,
  taskIds: { newActive: [{ id: 'new-1' } as never], newInactive: [], otherActive: [{ id: 'old-2' } as never] },
  deployIds: { new: 'd2', old: ['d1'] },
  now: Date.now(),
  signal: AbortSignal.timeout(5000),
});

let server: Server | undefined;
afterEach(() => server?.close());

async function serve(handler: (url: string) => [number, string]): Promise<string> {
  server = createServer((req, res) => {
    const [status, body] = handler(req.url ?? '');
    res.writeHead(status, { 'content-type': 'application/json' }).end(body);
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  const address = server.address();
  return `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
}

describe('http check', () => {
  it('passes on 2xx, substituting $DEPLOY_ID and $STEP in the URL', async () => {
    const base = await serve((url) => (url === '/verify/d2/2' ? [200, '{}'] : [404, '{}']));
    const answer = await createHttpCheck(spec('http', { url: `${base}/verify/$DEPLOY_ID/$STEP` })).evaluate(context());
    expect(answer.state).toBe('SUCCEEDED');
  });

  it.each([
    ['field equals', { ok: true }, 'SUCCEEDED'],
    ['field differs', { ok: false }, 'FAILED'],
  ])('with jsonPath: %s', async (_name, body, state) => {
    const base = await serve(() => [200, JSON.stringify({ result: body })]);
    const answer = await createHttpCheck(spec('http', { url: base, jsonPath: 'result.ok', equals: true })).evaluate(context());
    expect(answer.state).toBe(state);
  });

  it('fails on an unexpected status, naming it', async () => {
    const base = await serve(() => [503, '{}']);
    const answer = await createHttpCheck(spec('http', { url: base })).evaluate(context());
    expect(answer).toMatchObject({ state: 'FAILED', message: expect.stringContaining('503') });
  });
});

describe('command check', () => {
  it.each([
    ['exit 0 passes', 'echo fine', 'SUCCEEDED', 'fine'],
    ['exit 75 is PENDING', 'echo later; exit 75', 'PENDING', 'later'],
    ['anything else fails with the last line', 'echo one; echo two; exit 1', 'FAILED', 'two'],
    [
      'sees the deploy in its environment',
      'echo "$REQUEST_ID $DEPLOY_ID $STEP $NEW_TASK_IDS $OLD_TASK_IDS"',
      'SUCCEEDED',
      'web d2 2 new-1 old-2',
    ],
  ])('%s', async (_name, command, state, message) => {
    const answer = await createCommandCheck(spec('command', { command })).evaluate(context());
    expect(answer).toEqual({ state, message });
  });
});

describe('server check modules', () => {
  it('loads checks exported by modules named in config', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fledge-checks-'));
    const file = join(dir, 'hooks.mjs');
    writeFileSync(file, "export default [{ name: 'budget', evaluate: async () => ({ state: 'SUCCEEDED', message: 'within budget' }) }];\n");
    const [check] = await loadServerChecks([file]);
    expect(check?.name).toBe('budget');
    expect(check?.intervalSeconds).toBe(5);
    expect(await check?.evaluate(context())).toEqual({ state: 'SUCCEEDED', message: 'within budget' });
  });

  it('refuses a module that exports no check, naming the module', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fledge-checks-'));
    const file = join(dir, 'bad.mjs');
    writeFileSync(file, 'export default 42;\n');
    await expect(loadServerChecks([file])).rejects.toThrow(file);
  });
});
