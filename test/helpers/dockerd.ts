// Private Docker daemons for tests: each with its own data root, exec root, unix socket, pid
// file and configuration file, no bridge and no iptables (host networking only), so several
// run side by side and none touches the machine's own Docker (if any).
//
// stop() removes the daemon's containers, stops it by pid (SIGTERM, then SIGKILL), kills what a
// SIGKILLed daemon can leave behind (containerd shims and container processes, found by this
// daemon's paths and container ids), unmounts everything under its directories
// (`<exec-root>/netns/default`, overlay mounts) and removes them. kill() SIGKILLs the daemon
// alone (its containers keep running: their shims outlive it); crash() SIGKILLs the daemon and
// every process of its containers, as a host that loses power; start() brings it back on the
// same directories (a restarted daemon stops what still ran of the containers).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, closeSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { DockerClient } from '../../src/runtimes/docker/client.ts';
import { waitFor } from './wait-for.ts';

export interface DockerdOptions {
  /** a label for messages */
  name?: string;
  /** storage driver; default overlay2 (FLEDGE_TEST_DOCKER_STORAGE overrides), vfs when overlay2 cannot start */
  storageDriver?: string;
  /** more dockerd flags (e.g. a tcp listener with --tlsverify) */
  args?: string[];
}

const running = new Set<Dockerd>();
let exitHook = false;

export class Dockerd {
  readonly name: string;
  readonly dir: string;
  readonly socket: string;
  readonly endpoint: string;
  readonly client: DockerClient;
  #pid: number | undefined;
  #storage: string;
  readonly #args: string[];

  constructor(options: DockerdOptions = {}) {
    this.name = options.name ?? 'dockerd';
    // Short paths: unix socket paths are limited to 108 bytes, containerd's live under the exec root.
    this.dir = mkdtempSync('/tmp/fd-');
    this.socket = path.join(this.dir, 'docker.sock');
    this.endpoint = `unix://${this.socket}`;
    this.client = new DockerClient({ kind: 'unix', socketPath: this.socket }, { timeoutMs: 20_000 });
    this.#storage = options.storageDriver ?? process.env.FLEDGE_TEST_DOCKER_STORAGE ?? 'overlay2';
    this.#args = options.args ?? [];
    writeFileSync(path.join(this.dir, 'daemon.json'), '{}\n');
  }

  get pid(): number | undefined {
    return this.#pid;
  }

  get dataRoot(): string {
    return path.join(this.dir, 'data');
  }

  get execRoot(): string {
    return path.join(this.dir, 'exec');
  }

  /** Start (or restart) the daemon and wait until it answers /_ping. */
  async start(): Promise<this> {
    this.#clearStaleContainerd();
    try {
      await this.#spawn(this.#storage);
    } catch (err) {
      if (this.#storage !== 'overlay2' || !/overlay|storage|graphdriver/i.test(this.log())) throw err;
      // overlay2 over an overlay filesystem (Docker in Docker) does not work: fall back.
      await this.#reap();
      this.#storage = 'vfs';
      await this.#spawn('vfs');
    }
    return this;
  }

  async #spawn(storage: string): Promise<void> {
    const log = openSync(path.join(this.dir, 'dockerd.log'), 'a');
    const args = [
      '--data-root',
      this.dataRoot,
      '--exec-root',
      this.execRoot,
      '-H',
      this.endpoint,
      '--pidfile',
      path.join(this.dir, 'docker.pid'),
      '--config-file',
      path.join(this.dir, 'daemon.json'),
      '--bridge=none',
      '--iptables=false',
      '--ip6tables=false',
      '--ip-masq=false',
      `--storage-driver=${storage}`,
      '--log-level=warn',
      ...this.#args,
    ];
    let child: ChildProcess;
    try {
      child = spawn('dockerd', args, { stdio: ['ignore', log, log], detached: true });
    } finally {
      closeSync(log);
    }
    const spawned = await new Promise<number>((resolve, reject) => {
      child.once('spawn', () => resolve(child.pid as number));
      child.once('error', (err) => reject(new Error(`cannot run dockerd (is docker.io installed? .ci/run installs it): ${err.message}`)));
    });
    this.#pid = spawned;
    running.add(this);
    installExitHook();
    let exited = false;
    child.once('exit', () => (exited = true));
    await waitFor(
      async () => {
        if (exited) throw new Error(`dockerd exited during start-up:\n${this.log().slice(-3000)}`);
        await this.client.ping(1_000);
        return true;
      },
      { timeoutMs: 30_000, intervalMs: 100, message: `${this.name} to answer /_ping on ${this.socket}` },
    ).catch((err: unknown) => {
      throw new Error(`${err instanceof Error ? err.message : String(err)}\n--- dockerd log ---\n${this.log().slice(-3000)}`);
    });
  }

  /**
   * A SIGKILLed dockerd leaves containerd's pid file behind, and the dead containerd may linger
   * as a zombie for a while: a restarted dockerd takes the pid for a live containerd and waits
   * for it in vain. Remove the file (after killing a containerd of ours that really lives on).
   */
  #clearStaleContainerd(): void {
    const file = path.join(this.execRoot, 'containerd', 'containerd.pid');
    let pid: number;
    try {
      pid = Number(readFileSync(file, 'utf8').trim());
    } catch {
      return;
    }
    if (Number.isInteger(pid) && pid > 0 && alive(pid)) {
      try {
        if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(this.dir)) process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
      const deadline = Date.now() + 5_000;
      while (alive(pid) && Date.now() < deadline) execFileSync('sleep', ['0.05']);
    }
    rmSync(file, { force: true });
  }

  log(): string {
    try {
      return readFileSync(path.join(this.dir, 'dockerd.log'), 'utf8');
    } catch {
      return '';
    }
  }

  /** SIGKILL the daemon alone (its containerd goes with it; shims and containers may stay). */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.#pid !== undefined && alive(this.#pid)) process.kill(this.#pid, signal);
  }

  /** The host dies: the daemon, its containerd, the shims and every container process, SIGKILLed at once. */
  crash(): void {
    this.kill('SIGKILL');
    this.#killLeftovers();
  }

  async #reap(timeoutMs = 20_000): Promise<void> {
    const pid = this.#pid;
    if (pid === undefined) return;
    if (alive(pid)) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // gone meanwhile
      }
      const stopped = await waitFor(() => !alive(pid), { timeoutMs, intervalMs: 50 }).then(
        () => true,
        () => false,
      );
      if (!stopped && alive(pid)) process.kill(pid, 'SIGKILL');
      await waitFor(() => !alive(pid), { timeoutMs: 5_000, intervalMs: 20, message: `dockerd ${pid} to exit` });
    }
    this.#pid = undefined;
  }

  /** Remove every container (between tests: what a killed Fledge left running). */
  async removeAllContainers(): Promise<void> {
    const all = await this.client.listContainers([]);
    await Promise.all(all.map((c) => this.client.removeContainer(c.Id, { force: true })));
  }

  /** Remove every container, stop the daemon, kill leftovers, unmount, remove its directories. */
  async stop(): Promise<void> {
    if (this.#pid !== undefined && alive(this.#pid)) {
      try {
        const all = await this.client.listContainers([]);
        await Promise.all(all.map((c) => this.client.removeContainer(c.Id, { force: true }).catch(() => undefined)));
      } catch {
        // not answering: the leftovers are killed below
      }
    }
    await this.#reap();
    this.client.close();
    this.#killLeftovers();
    unmountUnder(this.dir);
    rmSync(this.dir, { recursive: true, force: true });
    running.delete(this);
  }

  /** Container ids this daemon ever created (from its data root). */
  #containerIds(): string[] {
    try {
      return readdirSync(path.join(this.dataRoot, 'containers'));
    } catch {
      return [];
    }
  }

  #killLeftovers(): void {
    const pids = new Set<number>();
    for (const id of this.#containerIds()) {
      for (const controller of ['pids', 'memory', 'cpu', 'freezer', 'systemd', 'unified']) {
        for (const file of [
          `/sys/fs/cgroup/${controller}/docker/${id}/cgroup.procs`,
          `/sys/fs/cgroup/${controller}/system.slice/docker-${id}.scope/cgroup.procs`,
        ]) {
          try {
            for (const line of readFileSync(file, 'utf8').split('\n')) if (/^\d+$/.test(line)) pids.add(Number(line));
          } catch {
            // no such cgroup
          }
        }
      }
    }
    // containerd and its shims name this daemon's exec root on their command line.
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
        if (cmdline.includes(this.dir) && Number(entry) !== process.pid) pids.add(Number(entry));
      } catch {
        // gone
      }
    }
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    const deadline = Date.now() + 5_000;
    while ([...pids].some(alive) && Date.now() < deadline) execFileSync('sleep', ['0.05']);
  }
}

/** Start a private daemon; stop() it in afterAll. */
export async function startDockerd(options: DockerdOptions = {}): Promise<Dockerd> {
  return new Dockerd(options).start();
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Unmount everything mounted at or below `dir`, deepest first. */
export function unmountUnder(dir: string): void {
  const points = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined && (p === dir || p.startsWith(`${dir}/`)))
    .map((p) => p.replace(/\\040/g, ' '))
    .sort((a, b) => b.length - a.length);
  for (const point of points) {
    try {
      execFileSync('umount', [point], { stdio: 'ignore' });
    } catch {
      try {
        execFileSync('umount', ['-l', point], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
  }
  if (existsSync(path.join(dir, 'exec', 'netns', 'default'))) {
    try {
      execFileSync('umount', ['-l', path.join(dir, 'exec', 'netns', 'default')], { stdio: 'ignore' });
    } catch {
      // not mounted
    }
  }
}

/** A test process that dies without its afterAll must not leave daemons running. */
function installExitHook(): void {
  if (exitHook) return;
  exitHook = true;
  process.once('exit', () => {
    for (const d of running) {
      if (d.pid !== undefined) {
        try {
          process.kill(d.pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
  });
}
