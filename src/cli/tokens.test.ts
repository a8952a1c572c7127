// Which token the CLI sends (--token, else FLEDGE_TOKEN, else <data-dir>/admin.token), what it
// says when one is refused, and the token commands, against the fake API.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { captureIo, reply, startFake, type FakeFledge } from './fake-server.ts';
import { runCli } from './main.ts';

let fake: FakeFledge;
let home: string;
beforeEach(() => {
  home = mkdtempSync(join(tmpdir(), 'fledge-cli-home-'));
});
afterEach(async () => {
  await fake?.close();
  rmSync(home, { recursive: true, force: true });
});

function tokenFile(dir: string, token: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'admin.token'), `${token}\n`, { mode: 0o600 });
}

const sent = () => fake.calls.map((c) => c.headers.authorization);

describe('the token the CLI sends', () => {
  beforeEach(async () => {
    fake = await startFake({ 'GET /api/requests': () => [] });
  });

  it('is the admin token of ./.fledge in the working directory, with nothing set (the README walkthrough)', async () => {
    tokenFile(join(home, '.fledge'), 'fl_from_cwd');
    expect(await runCli(['--server', fake.url, 'request', 'list'], captureIo({ cwd: home }))).toBe(0);
    expect(sent()).toEqual(['Bearer fl_from_cwd']);
  });

  it('is read from FLEDGE_DATA_DIR, and from --data-dir before it', async () => {
    tokenFile(join(home, 'env-dir'), 'fl_from_env');
    tokenFile(join(home, 'flag-dir'), 'fl_from_flag');
    const env = { FLEDGE_DATA_DIR: join(home, 'env-dir') };
    await runCli(['--server', fake.url, 'request', 'list'], captureIo({ env, cwd: home }));
    await runCli(['--server', fake.url, 'request', 'list', '--data-dir', join(home, 'flag-dir')], captureIo({ env, cwd: home }));
    expect(sent()).toEqual(['Bearer fl_from_env', 'Bearer fl_from_flag']);
  });

  it('is --token before FLEDGE_TOKEN before the file', async () => {
    tokenFile(join(home, '.fledge'), 'fl_file');
    await runCli(
      ['--server', fake.url, 'request', 'list', '--token', 'fl_flag'],
      captureIo({ cwd: home, env: { FLEDGE_TOKEN: 'fl_env' } }),
    );
    await runCli(['--server', fake.url, 'request', 'list'], captureIo({ cwd: home, env: { FLEDGE_TOKEN: 'fl_env' } }));
    expect(sent()).toEqual(['Bearer fl_flag', 'Bearer fl_env']);
  });

  it('is none without any, and a 401 then says where it looked', async () => {
    fake.route('GET /api/requests', () => reply(401, { message: 'This call needs a token', details: [] }));
    const io = captureIo({ cwd: home });
    expect(await runCli(['--server', fake.url, 'request', 'list'], io)).toBe(6);
    expect(sent()).toEqual([undefined]);
    expect(io.err()).toBe(
      `error: This call needs a token\n  no token: pass --token, set FLEDGE_TOKEN, or point --data-dir (FLEDGE_DATA_DIR) at the server's data dir (${join(home, '.fledge', 'admin.token')}: does not exist)\n`,
    );
  });

  it('says which token was refused', async () => {
    fake.route('GET /api/requests', () => reply(401, { message: 'The token was not accepted', details: [] }));
    tokenFile(join(home, '.fledge'), 'fl_old');
    const io = captureIo({ cwd: home });
    await runCli(['--server', fake.url, 'request', 'list'], io);
    expect(io.err()).toContain(`the admin token in ${join(home, '.fledge', 'admin.token')} was refused`);
  });
});

describe('token commands', () => {
  it('create prints the token alone on stdout, once', async () => {
    fake = await startFake({
      'POST /api/tokens': (call) => ({ ...(call.body as object), id: 'abc', createdAt: 1, token: 'fl_new' }),
    });
    const io = captureIo();
    expect(await runCli(['--server', fake.url, 'token', 'create', '--role', 'deploy', '--name', 'ci'], io)).toBe(0);
    expect(io.out()).toBe('fl_new\n');
    expect(io.err()).toMatch(/token ci \(deploy\) created; it is shown only now/);
    expect(fake.calls[0]?.body).toEqual({ name: 'ci', role: 'deploy' });
  });

  it('create refuses an unknown role before calling', async () => {
    fake = await startFake({});
    const io = captureIo();
    expect(await runCli(['--server', fake.url, 'token', 'create', '--role', 'root', '--name', 'x'], io)).toBe(2);
    expect(fake.calls).toEqual([]);
  });

  it('list, revoke, whoami and audit call the API', async () => {
    fake = await startFake({
      'GET /api/tokens': () => [{ id: 'a', name: 'ci', role: 'deploy', createdAt: 1, createdBy: 'admin' }],
      'DELETE /api/tokens/ci': () => ({ name: 'ci', revoked: true }),
      'GET /api/auth/whoami': () => ({ name: 'admin', role: 'admin', auth: true }),
      'GET /api/audit': () => [
        { id: 1, at: 1, tokenName: 'ci', role: 'deploy', method: 'POST', path: '/api/deploys', source: '127.0.0.1', status: 200 },
      ],
    });
    const io = captureIo();
    await runCli(['--server', fake.url, 'token', 'list'], io);
    await runCli(['--server', fake.url, 'token', 'revoke', 'ci'], io);
    await runCli(['--server', fake.url, 'whoami'], io);
    await runCli(['--server', fake.url, 'audit', '--request', 'web', '--limit', '5', '--since', '2024-01-01T00:00:00Z'], io);
    expect(io.out()).toMatch(/ci\s+deploy/);
    expect(io.out()).toContain('token ci revoked');
    expect(io.out()).toMatch(/name\s+admin\nrole\s+admin\nauth\s+on/);
    expect(io.out()).toMatch(/POST \/api\/deploys/);
    expect(fake.calls.at(-1)?.query).toEqual({ requestId: 'web', limit: '5', since: String(Date.parse('2024-01-01T00:00:00Z')) });
  });
});
