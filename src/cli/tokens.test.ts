// Which token the CLI sends (--token, else FLEDGE_TOKEN, else <data-dir>/admin.token), what it
// says when one is refused, and the token commands, against the real server
// (test/helpers/cli-app.ts): every token is a real one, and `whoami` says whose was taken.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { captureIo, startCliApp, type CliApp } from '../../test/helpers/cli-app.ts';
import { runCli } from './main.ts';

let app: CliApp;
let home: string;
beforeAll(async () => {
  app = await startCliApp();
});
afterAll(async () => app?.close());
beforeEach(() => {
  home = mkdtempSync(join(tmpdir(), 'fledge-cli-home-'));
});
afterEach(() => rmSync(home, { recursive: true, force: true }));

function tokenFile(dir: string, token: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'admin.token'), `${token}\n`, { mode: 0o600 });
}

let tokens = 0;
/** A real token of `role`, named so `whoami` tells it apart. */
async function token(name: string, role = 'read'): Promise<string> {
  tokens += 1;
  const created = await app.api<{ token: string }>('POST', '/api/tokens', { name: `${name}-${tokens}`, role });
  return created.token;
}
const since = () => {
  const from = app.calls.length;
  return () => app.calls.slice(from).map((c) => c.headers.authorization);
};
/** Runs `whoami` and returns the token name the server saw. */
async function whoami(args: string[], extra: Parameters<typeof captureIo>[0]): Promise<string | undefined> {
  const out = captureIo(extra);
  const code = await runCli(['--server', app.url, 'whoami', ...args], out);
  expect(code, out.err()).toBe(0);
  return /^name\s+(\S+)$/m.exec(out.out())?.[1];
}

describe('the token the CLI sends', () => {
  it('is the admin token of ./.fledge in the working directory, with nothing set (the README walkthrough)', async () => {
    const t = await token('cwd');
    tokenFile(join(home, '.fledge'), t);
    const sent = since();
    expect(await whoami([], { cwd: home })).toMatch(/^cwd-/);
    expect(sent()).toEqual([`Bearer ${t}`]);
  });

  it("is the server's own admin.token when FLEDGE_DATA_DIR points at its data dir", async () => {
    expect(await whoami([], { cwd: home, env: { FLEDGE_DATA_DIR: app.dataDir } })).toBe('admin');
  });

  it('is read from FLEDGE_DATA_DIR, and from --data-dir before it', async () => {
    tokenFile(join(home, 'env-dir'), await token('env'));
    tokenFile(join(home, 'flag-dir'), await token('flag'));
    const env = { FLEDGE_DATA_DIR: join(home, 'env-dir') };
    expect(await whoami([], { env, cwd: home })).toMatch(/^env-/);
    expect(await whoami(['--data-dir', join(home, 'flag-dir')], { env, cwd: home })).toMatch(/^flag-/);
  });

  it('is --token before FLEDGE_TOKEN before the file', async () => {
    tokenFile(join(home, '.fledge'), await token('file'));
    const [flag, env] = [await token('flag'), await token('env')];
    expect(await whoami(['--token', flag], { cwd: home, env: { FLEDGE_TOKEN: env } })).toMatch(/^flag-/);
    expect(await whoami([], { cwd: home, env: { FLEDGE_TOKEN: env } })).toMatch(/^env-/);
    expect(await whoami([], { cwd: home })).toMatch(/^file-/);
  });

  it('is none without any, and a 401 then says where it looked', async () => {
    const out = captureIo({ cwd: home });
    const sent = since();
    expect(await runCli(['--server', app.url, 'request', 'list'], out)).toBe(6);
    expect(sent()).toEqual([undefined]);
    expect(out.err()).toMatch(/^error: .+\n/);
    expect(out.err()).toContain(
      `\n  no token: pass --token, set FLEDGE_TOKEN, or point --data-dir (FLEDGE_DATA_DIR) at the server's data dir (${join(home, '.fledge', 'admin.token')}: does not exist)\n`,
    );
  });

  it('says which token was refused', async () => {
    // a token this server never issued (an old one)
    tokenFile(join(home, '.fledge'), 'fl_old');
    const out = captureIo({ cwd: home });
    expect(await runCli(['--server', app.url, 'request', 'list'], out)).toBe(6);
    expect(out.err()).toContain(`the admin token in ${join(home, '.fledge', 'admin.token')} was refused`);
  });
});

describe('token commands', () => {
  const io = () => captureIo({ env: { FLEDGE_TOKEN: app.adminToken } });

  it('create prints the token alone on stdout, once, and it works', async () => {
    const out = io();
    const sent = app.calls.length;
    expect(await runCli(['--server', app.url, 'token', 'create', '--role', 'deploy', '--name', 'ci'], out)).toBe(0);
    expect(out.out()).toMatch(/^\S+\n$/);
    expect(out.err()).toMatch(/token ci \(deploy\) created; it is shown only now/);
    expect(app.calls[sent]?.body).toEqual({ name: 'ci', role: 'deploy' });
    expect(await whoami(['--token', out.out().trim()], {})).toBe('ci');
  });

  it('create refuses an unknown role before calling', async () => {
    const out = io();
    const from = app.calls.length;
    expect(await runCli(['--server', app.url, 'token', 'create', '--role', 'root', '--name', 'x'], out)).toBe(2);
    expect(app.calls.slice(from)).toEqual([]);
  });

  it('list, revoke, whoami and audit call the API', async () => {
    await app.api('POST', '/api/tokens', { name: 'ci2', role: 'deploy' });
    await app.api('POST', '/api/requests', { id: 'audited', requestType: 'SERVICE', instances: 1 });
    const out = io();
    const from = app.calls.length;
    await runCli(['--server', app.url, 'token', 'list'], out);
    expect(out.out()).toMatch(/ci2\s+deploy/);
    await runCli(['--server', app.url, 'token', 'revoke', 'ci2'], out);
    expect(out.out()).toContain('token ci2 revoked');
    await runCli(['--server', app.url, 'whoami'], out);
    expect(out.out()).toMatch(/name\s+admin\nrole\s+admin\nauth\s+on/);
    await runCli(['--server', app.url, 'audit', '--request', 'audited', '--limit', '5', '--since', '2024-01-01T00:00:00Z'], out);
    expect(out.out()).toMatch(/POST \/api\/requests\b/);
    expect(app.calls.at(-1)?.query).toEqual({ requestId: 'audited', limit: '5', since: String(Date.parse('2024-01-01T00:00:00Z')) });
    expect(app.calls.slice(from).map((c) => `${c.method} ${c.path}`)).toEqual([
      'GET /api/tokens',
      'DELETE /api/tokens/ci2',
      'GET /api/auth/whoami',
      'GET /api/audit',
    ]);
  });
});
