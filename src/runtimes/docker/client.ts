// A small Docker Engine API client over node:http: a unix socket, or tcp with optional TLS.
// The API version is pinned to 1.41 (Docker 20.10, Debian 12's docker.io); newer daemons still
// serve it. Every call is bounded by a timeout; an error answer becomes DockerApiError carrying
// the daemon's own message, which is what a task failure shows to the user.
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';

export const DOCKER_API_VERSION = '1.41';

export type DockerEndpoint = { kind: 'unix'; socketPath: string } | { kind: 'tcp'; host: string; port: number; tls?: DockerTls };

/** PEM files for a tcp endpoint protected by TLS (dockerd --tlsverify). */
export interface DockerTls {
  ca?: string;
  cert?: string;
  key?: string;
}

/** `unix:///run/docker.sock` or `tcp://host:port`; throws with the reason. */
export function parseEndpoint(text: string, tls?: DockerTls): DockerEndpoint {
  if (text.startsWith('unix://')) {
    const socketPath = text.slice('unix://'.length);
    if (!socketPath.startsWith('/')) throw new Error(`${text}: a unix endpoint needs an absolute path (unix:///path/to/docker.sock)`);
    return { kind: 'unix', socketPath };
  }
  if (text.startsWith('tcp://')) {
    const url = new URL(`http://${text.slice('tcp://'.length)}`);
    const port = Number(url.port);
    if (!url.hostname || !Number.isInteger(port) || port < 1 || url.pathname !== '/') {
      throw new Error(`${text}: a tcp endpoint is tcp://<host>:<port>`);
    }
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    return tls && (tls.ca || tls.cert || tls.key) ? { kind: 'tcp', host, port, tls } : { kind: 'tcp', host, port };
  }
  throw new Error(`${text}: the endpoint must be unix:///path or tcp://host:port`);
}

export function describeEndpoint(e: DockerEndpoint): string {
  return e.kind === 'unix' ? `unix://${e.socketPath}` : `${e.tls ? 'tcp+tls' : 'tcp'}://${e.host}:${e.port}`;
}

/** The daemon answered with an error status; `message` is Docker's own text. */
export class DockerApiError extends Error {
  constructor(
    readonly status: number,
    readonly operation: string,
    readonly dockerMessage: string,
  ) {
    super(dockerMessage);
  }
}

/** The daemon could not be reached, or did not answer in time. */
export class DockerUnreachableError extends Error {}

type Query = Record<string, string | number | boolean | string[] | undefined>;

export interface RequestOptions {
  query?: Query;
  /** JSON body, or a stream sent as is (with contentType) */
  body?: unknown;
  contentType?: string;
  timeoutMs?: number;
}

export interface DockerClientOptions {
  /** default bound of one call; default 10 s */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;
/** bounds what one JSON answer may hold, so a broken daemon cannot exhaust memory */
const MAX_BODY_BYTES = 64 * 1024 * 1024;

export class DockerClient {
  readonly endpoint: DockerEndpoint;
  readonly #agent: http.Agent;
  readonly #timeoutMs: number;
  readonly #tls: { ca?: Buffer; cert?: Buffer; key?: Buffer } = {};

  constructor(endpoint: DockerEndpoint, options: DockerClientOptions = {}) {
    this.endpoint = endpoint;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (endpoint.kind === 'tcp' && endpoint.tls) {
      // Read once at start-up: a missing file is a configuration error, reported at once.
      if (endpoint.tls.ca) this.#tls.ca = readFileSync(endpoint.tls.ca);
      if (endpoint.tls.cert) this.#tls.cert = readFileSync(endpoint.tls.cert);
      if (endpoint.tls.key) this.#tls.key = readFileSync(endpoint.tls.key);
      this.#agent = new https.Agent({ keepAlive: true, maxSockets: 32, ...this.#tls });
    } else {
      this.#agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
    }
  }

  describe(): string {
    return describeEndpoint(this.endpoint);
  }

  /** One call; resolves with the status and the parsed JSON (or text) body, rejects on >= 400. */
  async request<T = unknown>(method: string, path: string, options: RequestOptions = {}): Promise<{ status: number; body: T }> {
    const res = await this.#send(method, path, options, this.#agent);
    const text = await readBody(res, `${method} ${path}`);
    const status = res.statusCode ?? 0;
    if (status >= 400) throw new DockerApiError(status, `${method} ${path}`, errorText(text, status));
    const type = String(res.headers['content-type'] ?? '');
    const body = (type.includes('json') && text.length > 0 ? JSON.parse(text) : text) as T;
    return { status, body };
  }

  /**
   * A streaming call (logs, events, pulls): resolves with the response once headers arrived.
   * No timeout after that; the caller ends it with destroy(). Error statuses reject with the body.
   */
  async stream(method: string, path: string, options: RequestOptions = {}): Promise<http.IncomingMessage> {
    // Its own connection: a long stream must not hold one of the pooled keep-alive sockets.
    const res = await this.#send(method, path, options, false);
    const status = res.statusCode ?? 0;
    if (status >= 400) {
      const text = await readBody(res, `${method} ${path}`);
      throw new DockerApiError(status, `${method} ${path}`, errorText(text, status));
    }
    return res;
  }

  #send(method: string, path: string, options: RequestOptions, agent: http.Agent | false): Promise<http.IncomingMessage> {
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(options.query ?? {})) {
      if (Array.isArray(v)) for (const item of v) query.append(k, item);
      else if (v !== undefined) query.set(k, String(v));
    }
    const qs = query.size > 0 ? `?${query.toString()}` : '';
    const fullPath = `/v${DOCKER_API_VERSION}${path}${qs}`;
    const streamBody = isReadable(options.body) ? options.body : undefined;
    const json = options.body !== undefined && !streamBody ? Buffer.from(JSON.stringify(options.body)) : undefined;
    // TLS checks the daemon's certificate against the Host: name the real host on tcp.
    const e0 = this.endpoint;
    const headers: Record<string, string | number> = {
      Host: e0.kind === 'unix' ? 'docker' : `${e0.host.includes(':') ? `[${e0.host}]` : e0.host}:${e0.port}`,
    };
    if (json) {
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = json.length;
    } else if (streamBody) {
      headers['Content-Type'] = options.contentType ?? 'application/octet-stream';
    }
    const e = this.endpoint;
    const base: http.RequestOptions = { method, path: fullPath, headers, agent };
    const target: http.RequestOptions =
      e.kind === 'unix'
        ? { ...base, socketPath: e.socketPath }
        : { ...base, host: e.host, port: e.port, ...(agent === false && e.tls ? this.#tls : {}) };
    const useTls = e.kind === 'tcp' && e.tls !== undefined;
    return new Promise((resolve, reject) => {
      const req = (useTls ? https : http).request(target, (res) => {
        clearTimeout(timer);
        resolve(res);
      });
      const timer = setTimeout(() => {
        req.destroy(new DockerUnreachableError(`Docker at ${this.describe()} did not answer ${method} ${path} within ${timeoutMs} ms`));
      }, timeoutMs);
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(
          err instanceof DockerUnreachableError
            ? err
            : new DockerUnreachableError(`cannot reach Docker at ${this.describe()}: ${err.message}`),
        );
      });
      if (streamBody) {
        streamBody.on('error', (err) => req.destroy(err));
        streamBody.pipe(req);
      } else {
        req.end(json);
      }
    });
  }

  close(): void {
    this.#agent.destroy();
  }

  // ---- the calls Fledge makes ------------------------------------------------------------

  async ping(timeoutMs?: number): Promise<void> {
    await this.request('GET', '/_ping', { ...(timeoutMs !== undefined ? { timeoutMs } : {}) });
  }

  async info(): Promise<DockerInfo> {
    return (await this.request<DockerInfo>('GET', '/info')).body;
  }

  async version(): Promise<{ Version: string; ApiVersion: string }> {
    return (await this.request<{ Version: string; ApiVersion: string }>('GET', '/version')).body;
  }

  /** The container, or undefined when the daemon has none of that id or name. */
  async inspectContainer(idOrName: string): Promise<ContainerInspect | undefined> {
    try {
      return (await this.request<ContainerInspect>('GET', `/containers/${encodeURIComponent(idOrName)}/json`)).body;
    } catch (err) {
      if (err instanceof DockerApiError && err.status === 404) return undefined;
      throw err;
    }
  }

  async createContainer(name: string, config: object): Promise<string> {
    const { body } = await this.request<{ Id: string }>('POST', '/containers/create', { query: { name }, body: config });
    return body.Id;
  }

  async startContainer(id: string): Promise<void> {
    // 304: already started.
    await this.request('POST', `/containers/${encodeURIComponent(id)}/start`);
  }

  /** Send a signal; false when the container is not running (or gone). */
  async killContainer(id: string, signal: string): Promise<boolean> {
    try {
      await this.request('POST', `/containers/${encodeURIComponent(id)}/kill`, { query: { signal } });
      return true;
    } catch (err) {
      // 409: not running; 404: no such container.
      if (err instanceof DockerApiError && (err.status === 409 || err.status === 404)) return false;
      throw err;
    }
  }

  async removeContainer(id: string, options: { force?: boolean } = {}): Promise<void> {
    try {
      await this.request('DELETE', `/containers/${encodeURIComponent(id)}`, { query: { force: options.force ?? false, v: true } });
    } catch (err) {
      // 404: gone already; 409: a removal is in progress.
      if (err instanceof DockerApiError && (err.status === 404 || err.status === 409)) return;
      throw err;
    }
  }

  /** Containers (running or not) carrying every given label (`key=value` or `key`). */
  async listContainers(labels: string[]): Promise<ContainerSummary[]> {
    const filters = JSON.stringify({ label: labels });
    return (await this.request<ContainerSummary[]>('GET', '/containers/json', { query: { all: true, filters } })).body;
  }

  async inspectImage(ref: string): Promise<{ Id: string; Config?: { Cmd?: string[] | null; Entrypoint?: string[] | null } } | undefined> {
    try {
      return (await this.request<{ Id: string }>('GET', `/images/${encodeURIComponent(ref)}/json`)).body;
    } catch (err) {
      if (err instanceof DockerApiError && err.status === 404) return undefined;
      throw err;
    }
  }

  /**
   * Pull an image. The daemon answers 200 and then streams progress; a failure may come as an
   * error status or as an `error` line in the stream: both reject with Docker's message.
   */
  async pullImage(ref: string, timeoutMs: number): Promise<void> {
    const { fromImage, tag } = splitImageRef(ref);
    const res = await this.stream('POST', '/images/create', { query: { fromImage, tag }, timeoutMs });
    await new Promise<void>((resolve, reject) => {
      let buffered = '';
      let failure: string | undefined;
      const timer = setTimeout(() => res.destroy(new Error(`pulling ${ref} took longer than ${timeoutMs} ms`)), timeoutMs);
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffered += chunk;
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          if (!line) continue;
          try {
            const msg = JSON.parse(line) as { error?: string };
            if (msg.error) failure ??= msg.error;
          } catch {
            // progress lines only
          }
        }
        if (buffered.length > 1 << 20) buffered = '';
      });
      res.on('end', () => {
        clearTimeout(timer);
        if (failure) reject(new DockerApiError(500, `pull ${ref}`, failure));
        else resolve();
      });
      res.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  /** Unpacks a tar stream into a (created, not yet started) container at `path`, which must exist there. */
  async putArchive(id: string, path: string, tar: Readable, timeoutMs = 120_000): Promise<void> {
    await this.request('PUT', `/containers/${encodeURIComponent(id)}/archive`, {
      query: { path },
      body: tar,
      contentType: 'application/x-tar',
      timeoutMs,
    });
  }

  /** Import a root filesystem tarball as `repo:tag` (docker import), with Dockerfile `changes` (CMD, ENV...). */
  async importImage(tar: Readable, repo: string, tag: string, changes: string[] = [], timeoutMs = 120_000): Promise<void> {
    const res = await this.stream('POST', '/images/create', {
      query: { fromSrc: '-', repo, tag, changes },
      body: tar,
      contentType: 'application/x-tar',
      timeoutMs,
    });
    const text = await readBody(res, 'import');
    const failure = text
      .split('\n')
      .map((l) => {
        try {
          return (JSON.parse(l) as { error?: string }).error;
        } catch {
          return undefined;
        }
      })
      .find(Boolean);
    if (failure) throw new DockerApiError(500, `import ${repo}:${tag}`, failure);
  }
}

/** `name[:tag]` or `name@digest` → the pull's fromImage and tag (latest when none is given). */
export function splitImageRef(ref: string): { fromImage: string; tag: string } {
  const at = ref.indexOf('@');
  if (at >= 0) return { fromImage: ref.slice(0, at), tag: ref.slice(at + 1) };
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  if (colon > slash) return { fromImage: ref.slice(0, colon), tag: ref.slice(colon + 1) };
  return { fromImage: ref, tag: 'latest' };
}

function isReadable(value: unknown): value is Readable {
  return typeof value === 'object' && value !== null && typeof (value as Readable).pipe === 'function';
}

function readBody(res: http.IncomingMessage, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) res.destroy(new Error(`Docker's answer to ${what} is larger than ${MAX_BODY_BYTES} bytes`));
      else chunks.push(chunk);
    });
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', reject);
    res.on('aborted', () => reject(new DockerUnreachableError(`the connection to Docker closed while reading ${what}`)));
  });
}

function errorText(text: string, status: number): string {
  try {
    const parsed = JSON.parse(text) as { message?: unknown };
    if (typeof parsed.message === 'string') return parsed.message;
  } catch {
    // not JSON
  }
  return text.trim() || `HTTP ${status}`;
}

/** The parts of GET /info Fledge reads. */
export interface DockerInfo {
  NCPU: number;
  MemTotal: number;
  ServerVersion: string;
  Name: string;
  OperatingSystem?: string;
}

export interface ContainerState {
  Status: 'created' | 'running' | 'paused' | 'restarting' | 'removing' | 'exited' | 'dead';
  Running: boolean;
  OOMKilled: boolean;
  Pid: number;
  ExitCode: number;
  Error: string;
  StartedAt: string;
  FinishedAt: string;
}

export interface ContainerInspect {
  Id: string;
  Name: string;
  State: ContainerState;
  Config: {
    Labels: Record<string, string> | null;
    Env: string[] | null;
    Cmd: string[] | null;
    Entrypoint: string[] | null;
    Image: string;
    StopSignal?: string;
    ExposedPorts?: Record<string, object> | null;
  };
  HostConfig: Record<string, unknown>;
}

export interface ContainerSummary {
  Id: string;
  Names: string[];
  Labels: Record<string, string>;
  State: string;
}
