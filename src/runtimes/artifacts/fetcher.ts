/*
 * Artifacts into a task's sandbox before its command starts (Singularity's `uris`, and
 * SingularityExecutor's external and embedded artifacts). Shared by the runtimes: the process
 * runtime fetches into the task's own sandbox; the Docker runtime fetches into its sandbox on
 * this machine and copies that into the container (see docker-runtime.ts).
 *
 * - http(s) through Node's fetch: each attempt bounded by --artifact-timeout-seconds, the body by
 *   --artifact-max-mb (a larger Content-Length is refused before a byte is read), retried
 *   --artifact-retries times with backoff on network errors, timeouts, 408/429/5xx and a
 *   checksum or size mismatch; any other status fails at once. file:// URLs are copied.
 * - Downloads land in <dataDir>/artifacts: a temp file renamed into place once whole (and its
 *   md5 and size checked when given), so a crash never leaves half a file that reads as done.
 *   `cache: true` (and every executor artifact, as SingularityExecutor caches them) keeps the
 *   download under a name made of the URL and the md5, for later tasks; the cache is bounded
 *   by --artifact-cache-mb, the least recently used files going first. Tasks fetching the same
 *   URL at the same time share one download, cached or not: ten instances download once.
 * - Each task gets its own copy in its sandbox (a task may change its files), made executable
 *   when asked, and unpacked when asked and its name is an archive's (archive.ts).
 * - A failure is an ArtifactError naming the URL (or the embedded file) and why; the runtime
 *   turns it into a start error, which fails the task, and a deploy's failure names it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, copyFile, mkdir, readdir, realpath, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { fileURLToPath } from 'node:url';
import type { ArtifactFetch } from '../../core/launch.ts';
import { archiveKind, checkTree, unpack } from './archive.ts';

export interface ArtifactFetcherOptions {
  /** where downloads and the cache live (<dataDir>/artifacts) */
  dir: string;
  /** the largest artifact (download, copy or unpacked file) */
  maxBytes: number;
  /** per download attempt, and per unpacking */
  timeoutMs: number;
  /** attempts after the first, for failures that may pass */
  retries: number;
  /** the cache's bound */
  cacheMaxBytes: number;
  /** first retry after this long, doubling (default 500 ms) */
  retryDelayMs?: number;
  logger?: { info(o: object, m: string): void; warn(o: object, m: string): void };
}

/** A fetch failure: the artifact (its URL, or its file for embedded content) and why. */
export class ArtifactError extends Error {
  constructor(
    readonly artifact: string,
    readonly reason: string,
  ) {
    super(`Could not fetch artifact ${artifact}: ${reason}`);
    this.name = 'ArtifactError';
  }
}

/** Files a runtime writes into the sandbox root itself: an artifact must not be (or shadow) one. */
const RESERVED = new Set([
  'stdout',
  'stderr',
  'task.json',
  'task.json.tmp',
  'exit',
  'exit.tmp',
  'exit.runtime',
  'service.pid',
  'logs.cursor',
]);

class Transient extends Error {}

interface Download {
  file: Promise<string>;
  users: number;
  cached: boolean;
}

export class ArtifactFetcher {
  readonly #o: Required<Omit<ArtifactFetcherOptions, 'logger'>> & Pick<ArtifactFetcherOptions, 'logger'>;
  readonly #downloads = new Map<string, Download>();
  /** downloads made since start (for tests and the bench: 10 instances, 1 download) */
  downloads = 0;

  constructor(options: ArtifactFetcherOptions) {
    this.#o = { retryDelayMs: 500, ...options };
  }

  /** Puts every artifact into `sandbox` (which exists), in order. Throws ArtifactError. */
  async fetchInto(sandbox: string, artifacts: readonly ArtifactFetch[]): Promise<void> {
    const root = await realpath(sandbox);
    for (const a of artifacts) {
      const what = a.url ?? a.path;
      try {
        await this.#place(root, a);
        checkTree(root);
      } catch (err) {
        if (err instanceof ArtifactError) throw err;
        throw new ArtifactError(what, err instanceof Error ? err.message : String(err));
      }
    }
  }

  async #place(root: string, a: ArtifactFetch): Promise<void> {
    const dest = await this.#inside(root, a.path);
    if (a.content !== undefined) {
      const bytes = Buffer.from(a.content, 'base64');
      if (bytes.length > this.#o.maxBytes) throw new ArtifactError(a.path, `it is larger than ${this.#o.maxBytes} bytes`);
      check(a, bytes.length, createHash('md5').update(bytes).digest('hex'), a.path);
      await writeFile(dest, bytes, { mode: 0o644 });
    } else {
      const url = a.url ?? '';
      const source = url.startsWith('file:') ? await this.#local(a, url) : undefined;
      if (source) await copyFile(source, dest);
      else {
        const download = this.#share(a, url);
        try {
          await copyFile(await download.file, dest);
        } finally {
          await this.#release(download);
        }
      }
    }
    if (a.executable) await chmod(dest, 0o755);
    if (a.extract) {
      const kind = archiveKind(a.path);
      if (kind) {
        const into = await this.#inside(root, path.posix.join(a.extractTo || '.', '.keep'));
        await unpack(dest, kind, path.dirname(into), { maxFileBytes: this.#o.maxBytes, timeoutMs: this.#o.timeoutMs });
        if (!a.keepArchive) await rm(dest, { force: true });
        const { bytes } = checkTree(root);
        if (bytes > this.#o.maxBytes * 4) throw new ArtifactError(a.url ?? a.path, `it unpacks to more than ${this.#o.maxBytes * 4} bytes`);
      }
    }
  }

  /** `rel` inside the sandbox, its folders made; refused when it is reserved or leaves the sandbox. */
  async #inside(root: string, rel: string): Promise<string> {
    const target = path.resolve(root, rel);
    if (!target.startsWith(`${root}${path.sep}`)) throw new ArtifactError(rel, 'its path leaves the sandbox');
    if (path.dirname(target) === root && RESERVED.has(path.basename(target))) {
      throw new ArtifactError(rel, `${path.basename(target)} is a file Fledge itself writes in the sandbox`);
    }
    await mkdir(path.dirname(target), { recursive: true });
    // A folder an earlier artifact made could be a link: follow it and check again.
    const parent = await realpath(path.dirname(target));
    if (parent !== root && !parent.startsWith(`${root}${path.sep}`)) throw new ArtifactError(rel, 'its folder leads out of the sandbox');
    return path.join(parent, path.basename(target));
  }

  async #local(a: ArtifactFetch, url: string): Promise<string> {
    let file: string;
    try {
      file = fileURLToPath(url);
    } catch {
      throw new ArtifactError(url, 'not a local file URL');
    }
    const st = await stat(file).catch((err: NodeJS.ErrnoException) => {
      throw new ArtifactError(url, err.code === 'ENOENT' ? 'no such file' : err.message);
    });
    if (!st.isFile()) throw new ArtifactError(url, 'not a regular file');
    if (st.size > this.#o.maxBytes) throw new ArtifactError(url, `it is larger than ${this.#o.maxBytes} bytes (--artifact-max-mb)`);
    if (a.md5 !== undefined || a.size !== undefined) check(a, st.size, await md5Of(file), url);
    return file;
  }

  /** One download per URL and checksum at a time; a cached one is reused while it matches. */
  #share(a: ArtifactFetch, url: string): Download {
    const cached = a.cache;
    const key = `${cached ? 'c' : 't'}-${createHash('sha256')
      .update(`${url}\n${a.md5 ?? ''}`)
      .digest('hex')
      .slice(0, 40)}`;
    const running = this.#downloads.get(key);
    if (running) {
      running.users++;
      return running;
    }
    const download: Download = { users: 1, cached, file: this.#obtain(a, url, key) };
    this.#downloads.set(key, download);
    // Forgotten once settled: a later task reads the cache (or downloads again when uncached).
    void download.file.then(
      () => undefined,
      () => this.#downloads.delete(key),
    );
    return download;
  }

  /** The last task done with an uncached download removes it. */
  async #release(download: Download): Promise<void> {
    if (--download.users > 0) return;
    for (const [key, d] of this.#downloads) if (d === download) this.#downloads.delete(key);
    if (!download.cached) {
      const file = await download.file.catch(() => undefined);
      if (file) await rm(file, { force: true });
    }
  }

  async #obtain(a: ArtifactFetch, url: string, key: string): Promise<string> {
    const folder = path.join(this.#o.dir, a.cache ? 'cache' : 'downloads');
    await mkdir(folder, { recursive: true, mode: 0o700 });
    const file = path.join(folder, key);
    if (a.cache) {
      const hit = await stat(file).catch(() => undefined);
      if (hit?.isFile()) {
        const matches = a.md5 === undefined || (await md5Of(file)) === a.md5;
        if (matches && (a.size === undefined || hit.size === a.size)) {
          const now = new Date();
          await utimes(file, now, now).catch(() => undefined);
          return file;
        }
      }
    }
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#download(a, url, file);
        this.downloads++;
        if (a.cache) await this.#trimCache(folder, file);
        this.#o.logger?.info({ url, attempt: attempt + 1 }, 'artifact downloaded');
        return file;
      } catch (err) {
        const transient = err instanceof Transient;
        const reason = err instanceof Error ? err.message : String(err);
        if (!transient || attempt >= this.#o.retries) {
          throw new ArtifactError(url, transient && attempt > 0 ? `${reason} (after ${attempt + 1} attempts)` : reason);
        }
        this.#o.logger?.warn({ url, attempt: attempt + 1, reason }, 'artifact download failed; retrying');
        await new Promise((resolve) => setTimeout(resolve, this.#o.retryDelayMs * 2 ** attempt));
      }
    }
  }

  async #download(a: ArtifactFetch, url: string, file: string): Promise<void> {
    const part = `${file}.${randomBytes(6).toString('hex')}.part`;
    const signal = AbortSignal.timeout(this.#o.timeoutMs);
    try {
      let res: Response;
      try {
        res = await fetch(url, { signal, redirect: 'follow' });
      } catch (err) {
        throw new Transient(abortText(err, this.#o.timeoutMs) ?? `cannot connect (${causeText(err)})`);
      }
      if (!res.ok || !res.body) {
        await res.body?.cancel().catch(() => undefined);
        const text = `the server answered ${res.status} ${res.statusText}`.trim();
        if (res.status === 408 || res.status === 429 || res.status >= 500) throw new Transient(text);
        throw new Error(text);
      }
      const declared = Number(res.headers.get('content-length'));
      if (Number.isFinite(declared) && declared > this.#o.maxBytes) {
        await res.body.cancel().catch(() => undefined);
        throw new Error(`it is ${declared} bytes, more than ${this.#o.maxBytes} (--artifact-max-mb)`);
      }
      const hash = createHash('md5');
      let bytes = 0;
      const max = this.#o.maxBytes;
      const count = new Transform({
        transform(chunk: Buffer, _enc, done) {
          bytes += chunk.length;
          if (bytes > max) return done(new Error(`it is more than ${max} bytes (--artifact-max-mb)`));
          hash.update(chunk);
          done(null, chunk);
        },
      });
      try {
        await pipeline(Readable.fromWeb(res.body as WebReadableStream), count, createWriteStream(part, { mode: 0o600 }));
      } catch (err) {
        const aborted = abortText(err, this.#o.timeoutMs);
        if (aborted) throw new Transient(aborted);
        if (err instanceof Error && /more than \d+ bytes/.test(err.message)) throw err;
        throw new Transient(`the download broke off (${causeText(err)})`);
      }
      try {
        check(a, bytes, hash.digest('hex'), url);
      } catch (err) {
        // A short or garbled transfer may pass on the next attempt.
        throw new Transient((err as Error).message.replace(/^Could not fetch artifact \S+: /, ''));
      }
      await rename(part, file);
    } finally {
      await rm(part, { force: true });
    }
  }

  /** Least recently used cache files go until the cache fits (the one just written stays). */
  async #trimCache(folder: string, keep: string): Promise<void> {
    const entries = await Promise.all(
      (await readdir(folder))
        .filter((n) => !n.endsWith('.part'))
        .map(async (n) => {
          const full = path.join(folder, n);
          const st = await stat(full).catch(() => undefined);
          return st ? { full, size: st.size, used: st.mtimeMs } : undefined;
        }),
    );
    const files = entries.filter((e): e is { full: string; size: number; used: number } => e !== undefined).sort((x, y) => x.used - y.used);
    let total = files.reduce((sum, f) => sum + f.size, 0);
    for (const f of files) {
      if (total <= this.#o.cacheMaxBytes) break;
      if (f.full === keep) continue;
      await rm(f.full, { force: true });
      total -= f.size;
    }
  }
}

function check(a: ArtifactFetch, size: number, md5: string, what: string): void {
  if (a.size !== undefined && size !== a.size) throw new ArtifactError(what, `it is ${size} bytes, not the ${a.size} its filesize says`);
  if (a.md5 !== undefined && md5 !== a.md5) throw new ArtifactError(what, `its md5 is ${md5}, not the ${a.md5} its md5sum says`);
}

async function md5Of(file: string): Promise<string> {
  const hash = createHash('md5');
  await pipeline(createReadStream(file), hash);
  return hash.digest('hex');
}

function abortText(err: unknown, timeoutMs: number): string | undefined {
  const name = (err as { name?: string })?.name;
  return name === 'TimeoutError' || name === 'AbortError'
    ? `no answer within ${timeoutMs / 1000} s (--artifact-timeout-seconds)`
    : undefined;
}

function causeText(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
  return cause?.code ?? cause?.message ?? (err instanceof Error ? err.message : String(err));
}
