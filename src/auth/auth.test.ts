import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../core/clock.ts';
import { createStore } from '../store/index.ts';
import type { Store } from '../store/types.ts';
import { adminTokenPath, ensureAdminToken, readAdminTokenFile } from './admin-token.ts';
import { Authenticator, KNOWN_TOKEN_CACHE_MS } from './authenticator.ts';
import { roleAllows } from './roles.ts';
import { bearerToken, generateToken, hashToken, isTokenShaped } from './tokens.ts';

describe('tokens', () => {
  it('are fl_ and 32 random bytes in base64url, never twice the same', () => {
    const a = generateToken();
    const b = generateToken();
    expect(a).toMatch(/^fl_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(a.slice(3), 'base64url')).toHaveLength(32);
    expect(a).not.toBe(b);
    expect(isTokenShaped(a)).toBe(true);
    expect(isTokenShaped(`${a}x`)).toBe(false);
    expect(hashToken(a)).toMatch(/^[0-9a-f]{64}$/);
  });

  it.each([
    ['Bearer fl_abc', 'fl_abc'],
    ['bearer   fl_abc ', 'fl_abc'],
    ['Basic Zm9vOmJhcg==', undefined],
    ['Bearer', undefined],
    ['Bearer a b', undefined],
    [undefined, undefined],
  ])('reads the token of the Authorization header %j', (header, token) => {
    expect(bearerToken(header)).toBe(token);
  });

  it.each([
    ['read', 'read', true],
    ['read', 'deploy', false],
    ['deploy', 'read', true],
    ['deploy', 'admin', false],
    ['admin', 'deploy', true],
  ] as const)('role %s may do what %s allows: %s', (role, needed, ok) => {
    expect(roleAllows(role, needed)).toBe(ok);
  });
});

describe('authenticator', () => {
  let store: Store;
  beforeEach(async () => {
    store = await createStore({ kind: 'memory' });
  });
  afterEach(() => store.close());

  it('knows a token by its hash only and records when it was last used, at most once a minute', async () => {
    const clock = new ManualClock();
    const auth = new Authenticator(store, clock);
    const { token, record } = await auth.create('ci', 'deploy', 'admin');
    expect(JSON.stringify(await store.listTokens())).not.toContain(token);
    expect(record.hash).toBe(hashToken(token));
    expect(await auth.identify(token)).toEqual({ name: 'ci', role: 'deploy', tokenId: record.id, tokenHash: record.hash });
    const first = (await store.findTokenByHash(record.hash))?.lastUsedAt;
    expect(first).toBe(clock.now());
    clock.advance(10_000);
    await auth.identify(token);
    expect((await store.findTokenByHash(record.hash))?.lastUsedAt).toBe(first);
    clock.advance(60_000);
    await auth.identify(token);
    expect((await store.findTokenByHash(record.hash))?.lastUsedAt).toBe(clock.now());
  });

  it('revokes at once through itself, and within the cache time when another scheduler revokes in the shared store', async () => {
    const clock = new ManualClock();
    const auth = new Authenticator(store, clock);
    const a = await auth.create('a', 'read');
    const b = await auth.create('b', 'read');
    expect(await auth.identify(a.token)).toBeDefined();
    expect(await auth.identify(b.token)).toBeDefined();
    expect(await auth.revoke('a')).toBe(true);
    expect(await auth.identify(a.token)).toBeUndefined();
    // revoked behind its back (another scheduler): known a little longer, then not
    await store.revokeToken('b');
    expect(await auth.identify(b.token)).toBeDefined();
    clock.advance(KNOWN_TOKEN_CACHE_MS);
    expect(await auth.identify(b.token)).toBeUndefined();
  });

  it('knows no revoked, unknown or malformed token', async () => {
    const auth = new Authenticator(store, new ManualClock());
    const { token } = await auth.create('ci', 'read');
    await store.revokeToken('ci');
    expect(await auth.identify(token)).toBeUndefined();
    expect(await auth.identify(generateToken())).toBeUndefined();
    expect(await auth.identify('x'.repeat(5000))).toBeUndefined();
  });
});

describe('admin token file', () => {
  let dir: string;
  let store: Store;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fledge-auth-'));
    store = await createStore({ kind: 'memory' });
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is written 0600 at the first start and known to the store as admin', async () => {
    const umask = process.umask(0o022);
    try {
      const first = await ensureAdminToken(dir, store, 1);
      expect(first).toMatchObject({ file: adminTokenPath(dir), name: 'admin', created: true });
      expect((statSync(first.file).mode & 0o777).toString(8)).toBe('600');
      expect(readFileSync(first.file, 'utf8')).toBe(`${first.token}\n`);
      expect((await store.findTokenByHash(hashToken(first.token)))?.role).toBe('admin');
      const again = await ensureAdminToken(dir, store, 2);
      expect(again).toEqual({ ...first, created: false });
      expect(await store.listTokens()).toHaveLength(1);
    } finally {
      process.umask(umask);
    }
  });

  it("adds a file's token the store does not know (a scheduler sharing the store), under another name when admin is taken", async () => {
    const other = await ensureAdminToken(dir, store, 1);
    rmSync(other.file);
    const mine = await ensureAdminToken(dir, store, 2);
    expect(mine.token).not.toBe(other.token);
    expect(mine.name).toBe(`admin-${hashToken(mine.token).slice(0, 8)}`);
    expect((await store.listTokens()).map((t) => t.role)).toEqual(['admin', 'admin']);
    // a file whose token was revoked is known again after a restart
    await store.revokeToken(mine.name);
    expect((await ensureAdminToken(dir, store, 3)).name).toBe(mine.name);
  });

  it.each([
    ['readable by others', (f: string) => chmodSync(f, 0o644), /can be read or written by other users \(mode 644\)/],
    ['writable by the group', (f: string) => chmodSync(f, 0o620), /mode 620/],
    ['not a token', (f: string) => writeFileSync(f, 'hello\n', { mode: 0o600 }), /does not hold a Fledge token/],
  ])('refuses a token file %s', async (_what, spoil, message) => {
    const { file } = await ensureAdminToken(dir, store, 1);
    rmSync(file);
    writeFileSync(file, `${generateToken()}\n`, { mode: 0o600 });
    spoil(file);
    expect(() => readAdminTokenFile(file)).toThrow(message);
    await expect(ensureAdminToken(dir, store, 2)).rejects.toThrow(message);
  });

  it('refuses a symbolic link in place of the token file', async () => {
    const target = join(dir, 'elsewhere');
    writeFileSync(target, `${generateToken()}\n`, { mode: 0o600 });
    symlinkSync(target, adminTokenPath(dir));
    await expect(ensureAdminToken(dir, store, 1)).rejects.toThrow(/symbolic link/);
  });
});
