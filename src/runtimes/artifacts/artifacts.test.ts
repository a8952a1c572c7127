// The artifact fetcher against a real HTTP server on loopback, real tar, unzip and gzip.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { freePort } from '../../../test/helpers/ports.ts';
import type { ArtifactFetch } from '../../core/launch.ts';
import { ArtifactError, ArtifactFetcher } from './index.ts';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;
const routes = new Map<string, Handler>();
const hits = new Map<string, number>();
let server: Server;
let base: string;
let work: string;

beforeAll(async () => {
  const port = await freePort();
  server = createServer((req, res) => {
    const route = req.url ?? '';
    hits.set(route, (hits.get(route) ?? 0) + 1);
    const handler = routes.get(route);
    if (!handler) {
      res.writeHead(404).end('not here');
      return;
    }
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

let fetcher: ArtifactFetcher;
let sandbox: string;
beforeEach(() => {
  routes.clear();
  hits.clear();
  work = mkdtempSync(path.join(tmpdir(), 'fledge-artifacts-'));
  sandbox = path.join(work, 'sandbox');
  mkdirSync(sandbox);
  fetcher = new ArtifactFetcher({
    dir: path.join(work, 'artifacts'),
    maxBytes: 1 << 20,
    timeoutMs: 2_000,
    retries: 2,
    cacheMaxBytes: 4 << 20,
    retryDelayMs: 10,
  });
  return () => rmSync(work, { recursive: true, force: true });
});

const serve = (route: string, body: Buffer | string, headers: Record<string, string> = {}) =>
  routes.set(route, (_req, res) => res.writeHead(200, headers).end(body));
/** Files left in the fetcher's download folder (uncached downloads and partial files must not stay). */
const leftovers = () => {
  const dir = path.join(work, 'artifacts', 'downloads');
  return existsSync(dir) ? readdirSync(dir) : [];
};
const md5 = (b: Buffer | string) => createHash('md5').update(b).digest('hex');
const artifact = (route: string, more: Partial<ArtifactFetch> = {}): ArtifactFetch => ({
  url: `${base}${route}`,
  path: path.basename(route),
  extract: true,
  extractTo: '',
  keepArchive: true,
  executable: false,
  cache: false,
  ...more,
});
const failure = async (artifacts: ArtifactFetch[]) => {
  const err = await fetcher.fetchInto(sandbox, artifacts).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ArtifactError);
  return (err as ArtifactError).message;
};

/** A tarball of `files` (relative name → content), made by GNU tar; `links` as symlinks. */
function tarball(name: string, files: Record<string, string>, links: Record<string, string> = {}, flags: string[] = ['-z']): Buffer {
  // One level down, so a `../x` member's own source file stays out of `work`.
  const dir = path.join(mkdtempSync(path.join(work, 'src-')), 'inner');
  mkdirSync(dir);
  for (const [f, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    writeFileSync(path.join(dir, f), content);
  }
  for (const [f, target] of Object.entries(links)) symlinkSync(target, path.join(dir, f));
  const out = path.join(work, name);
  execFileSync('tar', ['-c', ...flags, '-f', out, '-C', dir, ...Object.keys(files), ...Object.keys(links)]);
  return readFileSync(out);
}

// A zip (stored, no compression) written here, so the tests need unzip only.
const CRC = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
const crc32 = (b: Buffer) => {
  let c = 0xffffffff;
  for (const byte of b) c = (CRC[(c ^ byte) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
};
function zip(entries: { name: string; content: string; symlink?: boolean }[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const data = Buffer.from(e.content);
    const name = Buffer.from(e.name);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(10, 4);
    local.writeUInt32LE(crc32(data), 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(name.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(0x0314, 4); // made by Unix, so the mode below counts
    central.writeUInt16LE(10, 6);
    central.writeUInt32LE(crc32(data), 16);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(((e.symlink ? 0o120777 : 0o100644) << 16) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, data);
    centrals.push(central, name);
    offset += local.length + name.length + data.length;
  }
  const dir = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(dir.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, dir, end]);
}

describe('artifact fetcher', () => {
  it('downloads into the sandbox under the URL’s name or outputFile, executable when asked', async () => {
    serve('/bin/run.sh', '#!/bin/sh\necho hi\n');
    serve('/conf', 'port: 1');
    await fetcher.fetchInto(sandbox, [artifact('/bin/run.sh', { executable: true }), artifact('/conf', { path: 'etc/app.yml' })]);
    expect(readFileSync(path.join(sandbox, 'run.sh'), 'utf8')).toContain('echo hi');
    expect(statSync(path.join(sandbox, 'run.sh')).mode & 0o111).not.toBe(0);
    expect(readFileSync(path.join(sandbox, 'etc/app.yml'), 'utf8')).toBe('port: 1');
  });

  it('unpacks .tar.gz, .tar.xz, .zip and .gz, keeping the archive as Mesos does', async () => {
    serve('/app.tar.gz', tarball('app.tar.gz', { 'app/server.js': 'gz', 'app/lib/x.js': 'x' }));
    serve('/tools.tar.xz', tarball('tools.tar.xz', { 'tools/t': 'xz' }, {}, ['-J']));
    serve('/site.zip', zip([{ name: 'site/index.html', content: '<h1>zip</h1>' }]));
    serve('/data.json.gz', gzipSync('{"a":1}'));
    await fetcher.fetchInto(
      sandbox,
      ['/app.tar.gz', '/tools.tar.xz', '/site.zip', '/data.json.gz'].map((r) => artifact(r)),
    );
    expect(readFileSync(path.join(sandbox, 'app/server.js'), 'utf8')).toBe('gz');
    expect(readFileSync(path.join(sandbox, 'app/lib/x.js'), 'utf8')).toBe('x');
    expect(readFileSync(path.join(sandbox, 'tools/t'), 'utf8')).toBe('xz');
    expect(readFileSync(path.join(sandbox, 'site/index.html'), 'utf8')).toBe('<h1>zip</h1>');
    expect(readFileSync(path.join(sandbox, 'data.json'), 'utf8')).toBe('{"a":1}');
    expect(existsSync(path.join(sandbox, 'app.tar.gz'))).toBe(true);
  });

  it('leaves an archive packed with extract false, and a file that is no archive as it is', async () => {
    serve('/app.tgz', tarball('app.tgz', { 'a.txt': 'a' }));
    serve('/plain.txt', 'text');
    await fetcher.fetchInto(sandbox, [artifact('/app.tgz', { extract: false }), artifact('/plain.txt')]);
    expect(existsSync(path.join(sandbox, 'a.txt'))).toBe(false);
    expect(readFileSync(path.join(sandbox, 'plain.txt'), 'utf8')).toBe('text');
  });

  it('unpacks an executor .tar.gz into its target folder without keeping it', async () => {
    serve('/svc.tar.gz', tarball('svc.tar.gz', { 'bin/start': 'go' }));
    await fetcher.fetchInto(sandbox, [
      artifact('/svc.tar.gz', { path: 'app/svc.tar.gz', extractTo: 'app', keepArchive: false, cache: true }),
    ]);
    expect(readFileSync(path.join(sandbox, 'app/bin/start'), 'utf8')).toBe('go');
    expect(existsSync(path.join(sandbox, 'app/svc.tar.gz'))).toBe(false);
  });

  it.each([
    [
      'a tar member with ..',
      () => tarball('evil.tar', { '../escaped': 'x' }, {}, ['-P']),
      'evil.tar',
      /member "\.\.\/escaped" would be written outside the sandbox/,
    ],
    [
      'a tar link out of the sandbox',
      () => tarball('link.tgz', {}, { passwd: '/etc/passwd' }),
      'link.tgz',
      /passwd is a link to \/etc\/passwd, outside the sandbox/,
    ],
    ['a zip member with ..', () => zip([{ name: '../../escaped', content: 'x' }]), 'slip.zip', /would be written outside the sandbox/],
    [
      'a zip with a link',
      () =>
        zip([
          { name: 'l', content: '/etc', symlink: true },
          { name: 'l/x', content: 'y' },
        ]),
      'links.zip',
      /is a symbolic link/,
    ],
  ])('refuses %s, writing nothing outside', async (_what, make, name, reason) => {
    serve(`/${name}`, make());
    const message = await failure([artifact(`/${name}`)]);
    expect(message).toContain(`${base}/${name}`);
    expect(message).toMatch(reason);
    expect(existsSync(path.join(work, 'escaped'))).toBe(false);
    expect(existsSync(path.join(path.dirname(work), 'escaped'))).toBe(false);
  });

  it('refuses an artifact named like a file Fledge writes in the sandbox', async () => {
    serve('/stdout', 'x');
    expect(await failure([artifact('/stdout')])).toMatch(/stdout is a file Fledge itself writes in the sandbox/);
  });

  it('fails at once on a 404, naming the URL and the answer', async () => {
    expect(await failure([artifact('/missing.tgz')])).toBe(
      `Could not fetch artifact ${base}/missing.tgz: the server answered 404 Not Found`,
    );
    expect(hits.get('/missing.tgz')).toBe(1);
  });

  it('retries a 503 and succeeds', async () => {
    let n = 0;
    routes.set('/flaky', (_req, res) => (++n < 3 ? res.writeHead(503).end() : res.writeHead(200).end('ok')));
    await fetcher.fetchInto(sandbox, [artifact('/flaky')]);
    expect(readFileSync(path.join(sandbox, 'flaky'), 'utf8')).toBe('ok');
    expect(hits.get('/flaky')).toBe(3);
  });

  it('gives up after its retries, saying how many attempts it made', async () => {
    routes.set('/down', (_req, res) => res.writeHead(500, 'Internal Server Error').end());
    expect(await failure([artifact('/down')])).toBe(
      `Could not fetch artifact ${base}/down: the server answered 500 Internal Server Error (after 3 attempts)`,
    );
  });

  it('bounds each attempt in time', async () => {
    routes.set('/hang', () => undefined);
    fetcher = new ArtifactFetcher({
      dir: path.join(work, 'artifacts'),
      maxBytes: 1 << 20,
      timeoutMs: 300,
      retries: 1,
      cacheMaxBytes: 0,
      retryDelayMs: 10,
    });
    expect(await failure([artifact('/hang')])).toMatch(/no answer within 0.3 s \(--artifact-timeout-seconds\) \(after 2 attempts\)$/);
    expect(hits.get('/hang')).toBe(2);
  });

  it('refuses a body larger than the bound, declared or not', async () => {
    serve('/big', Buffer.alloc((1 << 20) + 1), { 'content-length': String((1 << 20) + 1) });
    expect(await failure([artifact('/big')])).toMatch(/it is 1048577 bytes, more than 1048576 \(--artifact-max-mb\)$/);
    routes.set('/stream', (_req, res) => {
      res.writeHead(200);
      res.write(Buffer.alloc(600_000));
      res.end(Buffer.alloc(600_000));
    });
    expect(await failure([artifact('/stream')])).toMatch(/more than 1048576 bytes/);
    expect(leftovers()).toEqual([]);
  });

  it('checks md5 and size, and retries a mismatch before failing', async () => {
    serve('/a.bin', 'content');
    await fetcher.fetchInto(sandbox, [artifact('/a.bin', { md5: md5('content'), size: 7 })]);
    expect(readFileSync(path.join(sandbox, 'a.bin'), 'utf8')).toBe('content');
    const wrong = await failure([artifact('/a.bin', { md5: md5('other'), path: 'b.bin' })]);
    expect(wrong).toMatch(new RegExp(`its md5 is ${md5('content')}, not the ${md5('other')} its md5sum says \\(after 3 attempts\\)$`));
  });

  it('downloads once for ten tasks fetching together, and once for later tasks when cached', async () => {
    routes.set('/shared.tgz', (_req, res) => {
      // Slow enough that all ten ask while the first download runs.
      setTimeout(() => res.writeHead(200).end(tarball('shared.tgz', { 'f.txt': 'f' })), 200);
    });
    const sandboxes = Array.from({ length: 10 }, (_, i) => {
      const dir = path.join(work, `task-${i}`);
      mkdirSync(dir);
      return dir;
    });
    await Promise.all(sandboxes.map((dir) => fetcher.fetchInto(dir, [artifact('/shared.tgz')])));
    expect(hits.get('/shared.tgz')).toBe(1);
    for (const dir of sandboxes) expect(readFileSync(path.join(dir, 'f.txt'), 'utf8')).toBe('f');
    // Uncached: nothing kept once the tasks have their copies.
    expect(leftovers()).toEqual([]);

    serve('/cached.bin', 'c');
    for (let i = 0; i < 3; i++) {
      const dir = path.join(work, `later-${i}`);
      mkdirSync(dir);
      await fetcher.fetchInto(dir, [artifact('/cached.bin', { cache: true })]);
      expect(readFileSync(path.join(dir, 'cached.bin'), 'utf8')).toBe('c');
    }
    expect(hits.get('/cached.bin')).toBe(1);
    expect(fetcher.downloads).toBe(2);
  });

  it('keys the cache by URL and md5: a new checksum downloads again', async () => {
    let version = 'one';
    routes.set('/app.bin', (_req, res) => res.writeHead(200).end(version));
    await fetcher.fetchInto(sandbox, [artifact('/app.bin', { cache: true, md5: md5('one') })]);
    version = 'two';
    const next = path.join(work, 'next');
    mkdirSync(next);
    await fetcher.fetchInto(next, [artifact('/app.bin', { cache: true, md5: md5('two') })]);
    expect(readFileSync(path.join(next, 'app.bin'), 'utf8')).toBe('two');
    expect(hits.get('/app.bin')).toBe(2);
  });

  it('copies file:// URLs and writes embedded content, checking md5', async () => {
    const local = path.join(work, 'local.txt');
    writeFileSync(local, 'local');
    await fetcher.fetchInto(sandbox, [
      { ...artifact('/x'), url: pathToFileURL(local).href, path: 'local.txt' },
      {
        content: Buffer.from('embedded').toString('base64'),
        path: 'conf/e.txt',
        extract: false,
        extractTo: 'conf',
        keepArchive: true,
        executable: false,
        cache: false,
        md5: md5('embedded'),
      },
    ]);
    expect(readFileSync(path.join(sandbox, 'local.txt'), 'utf8')).toBe('local');
    expect(readFileSync(path.join(sandbox, 'conf/e.txt'), 'utf8')).toBe('embedded');
    expect(await failure([{ ...artifact('/x'), url: pathToFileURL(path.join(work, 'nope')).href, path: 'nope' }])).toMatch(
      /: no such file$/,
    );
  });

  it('does not write through a folder an earlier artifact made a link', async () => {
    serve('/dir.tgz', tarball('dir.tgz', {}, { lib: '.' }));
    serve('/x', 'x');
    await fetcher.fetchInto(sandbox, [artifact('/dir.tgz')]);
    expect(lstatSync(path.join(sandbox, 'lib')).isSymbolicLink()).toBe(true);
    await fetcher.fetchInto(sandbox, [artifact('/x', { path: 'lib/x' })]);
    expect(readFileSync(path.join(sandbox, 'x'), 'utf8')).toBe('x');
  });
});
