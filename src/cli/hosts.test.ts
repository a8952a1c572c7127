// `fledge host`, against the real server (test/helpers/cli-app.ts): its local host, and a Docker
// host whose daemon is not there.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureIo, requestWithDeploy, startCliApp, type CliApp } from '../../test/helpers/cli-app.ts';
import { freePort } from '../../test/helpers/ports.ts';
import { waitFor } from '../../test/helpers/wait-for.ts';
import { FledgeClient, type HostView } from '../api/client.ts';
import { runCli } from './main.ts';

let app: CliApp;
let client: FledgeClient;
beforeAll(async () => {
  // nothing listens there: the host is unreachable
  const port = await freePort();
  app = await startCliApp({
    dockerHost: [`id=d2,endpoint=tcp://127.0.0.1:${port},address=127.0.0.9`],
    hostUnreachableSeconds: 1,
  });
  client = new FledgeClient(app.server.url, { token: app.adminToken });
});
afterAll(async () => app?.close());

const io = () => captureIo({ env: { FLEDGE_TOKEN: app.adminToken } });
const run = (args: string[], out = io()) => runCli(['--server', app.url, ...args], out).then((code) => ({ code, io: out }));

describe('fledge host', () => {
  it('lists hosts with state, capacity, reservations and tasks', async () => {
    await requestWithDeploy(app, 'web', { request: { instances: 2 } });
    await waitFor(async () => (await client.getHost('d2')).state === 'UNREACHABLE', { timeoutMs: 15_000 });
    const hosts = await client.listHosts();
    const local = hosts.find((h) => h.id === 'local')!;
    const { code, io } = await run(['host', 'list']);
    expect(code).toBe(0);
    const lines = io.out().split('\n');
    expect(lines[0]).toMatch(/^HOST +KIND +ADDRESS +STATE +CPUS +MEMORY MB +PORTS +TASKS$/);
    const { cpus, memoryMb, ports } = local.capacity!;
    expect(lines).toContainEqual(
      expect.stringMatching(
        new RegExp(
          `^local +process +127\\.0\\.0\\.1 +ACTIVE +${local.reserved.cpus}/${cpus} +${local.reserved.memoryMb}/${memoryMb} +2/${ports.count} +2$`,
        ),
      ),
    );
    // an unreachable host's capacity is not known
    expect(lines).toContainEqual(expect.stringMatching(/^d2 +docker +127\.0\.0\.9 +UNREACHABLE +0\/\? +0\/\? +0\/\? +0$/));
    expect(JSON.parse((await run(['host', 'ls', '--json'])).io.out())).toEqual(await client.listHosts());
  });

  it('shows one host, and changes its state with a message', async () => {
    const local: HostView = await client.getHost('local');
    const shown = await run(['host', 'get', 'local']);
    expect(shown.code).toBe(0);
    expect(shown.io.out()).toContain(`memory       ${local.reserved.memoryMb} of ${local.capacity!.memoryMb} MB reserved`);
    for (const t of local.tasks) expect(shown.io.out()).toContain(`  ${t}\n`);
    const from = app.calls.length;
    const changed = await run(['host', 'freeze', 'local', '-m', 'retire']);
    expect(changed.io.out()).toBe('host local: FROZEN\n');
    expect(app.calls.slice(from).find((c) => c.method === 'POST')?.body).toEqual({ message: 'retire' });
    expect((await client.getHost('local')).adminState.message).toBe('retire');
    const missing = await run(['host', 'freeze', 'nope']);
    expect(missing.code).toBe(3);
    expect(missing.io.err()).toContain('Host nope not found');
  });
});
