// Every process a task started, including children that left its process group (`setsid`,
// daemons that double-fork): stopping a task must stop them too, before and after a restart.
//
// Two marks, both inherited by every descendant and both surviving reparenting to init:
// - a cgroup v2 directory per task, when this machine lets Fledge create one (the wrapper
//   moves itself in before it starts the task); `cgroup.procs` lists the members and
//   `cgroup.kill` ends them all at once;
// - the `FLEDGE_TASK_ID` variable in each process's environment (found by reading
//   /proc/<pid>/environ), for machines without a writable cgroup v2 hierarchy. A process that
//   clears its environment escapes this mark, not the cgroup.
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export const TASK_ENV_MARK = 'FLEDGE_TASK_ID';

/** Where this process may create task cgroups: a cgroup2 mount plus our own cgroup's path. */
export function cgroupBase(procSelf = '/proc/self'): string | undefined {
  let mountinfo: string;
  let own: string | undefined;
  try {
    mountinfo = readFileSync(path.join(procSelf, 'mountinfo'), 'utf8');
    own = readFileSync(path.join(procSelf, 'cgroup'), 'utf8')
      .split('\n')
      .find((line) => line.startsWith('0::'))
      ?.slice(3);
  } catch {
    return undefined;
  }
  if (own === undefined) return undefined;
  for (const line of mountinfo.split('\n')) {
    // mountinfo: id parent major:minor root mountpoint options ... - fstype source superoptions
    const [left, right] = line.split(' - ');
    if (!left || !right || !right.startsWith('cgroup2 ')) continue;
    const fields = left.split(' ');
    const root = fields[3];
    const mountPoint = fields[4];
    if (!root || !mountPoint) continue;
    // our cgroup path is relative to the hierarchy's root; the mount shows `root` at mountPoint
    const relativeOwn = root === '/' ? own : own.startsWith(root) ? own.slice(root.length) : undefined;
    if (relativeOwn === undefined) continue;
    return path.join(mountPoint, relativeOwn);
  }
  return undefined;
}

/**
 * The per-data-dir folder holding one cgroup per task, if it can be created here. Two Fledges
 * with different data dirs never share one.
 */
export function prepareCgroupRoot(dataDir: string, base = cgroupBase()): string | undefined {
  const dir = cgroupRootPath(dataDir, base);
  if (dir === undefined) return undefined;
  try {
    mkdirSync(dir, { recursive: true });
    // A cgroup directory has cgroup.procs; a plain directory on a tmpfs would not.
    readFileSync(path.join(dir, 'cgroup.procs'), 'utf8');
    return dir;
  } catch {
    return undefined;
  }
}

/** Where a data dir's task cgroups live (whether or not it exists). */
export function cgroupRootPath(dataDir: string, base = cgroupBase()): string | undefined {
  if (base === undefined) return undefined;
  return path.join(base, `fledge-${createHash('sha256').update(path.resolve(dataDir)).digest('hex').slice(0, 12)}`);
}

export function taskCgroupName(taskId: string): string {
  return createHash('sha256').update(taskId).digest('hex').slice(0, 24);
}

/** Create the task's cgroup; undefined when it cannot be made (the env mark still works). */
export function createTaskCgroup(root: string | undefined, taskId: string): string | undefined {
  if (root === undefined) return undefined;
  const dir = path.join(root, taskCgroupName(taskId));
  try {
    mkdirSync(dir, { recursive: true });
    return dir;
  } catch {
    return undefined;
  }
}

export function cgroupMembers(dir: string | undefined): number[] {
  if (dir === undefined) return [];
  try {
    return readFileSync(path.join(dir, 'cgroup.procs'), 'utf8')
      .split('\n')
      .map(Number)
      .filter((pid) => Number.isInteger(pid) && pid > 0);
  } catch {
    return [];
  }
}

/** SIGKILL every member at once (kernel 5.14+); false when the kernel has no cgroup.kill. */
export function killCgroup(dir: string | undefined): boolean {
  if (dir === undefined) return false;
  try {
    writeFileSync(path.join(dir, 'cgroup.kill'), '1');
    return true;
  } catch {
    return false;
  }
}

/** Remove an empty task cgroup (the kernel refuses while it has members: then it stays). */
export function removeCgroup(dir: string | undefined): void {
  if (dir === undefined) return;
  try {
    rmdirSync(dir);
  } catch {
    // still populated or already gone
  }
}

/** Live processes (not zombies) whose environment carries the task's mark. */
export function markedProcesses(taskId: string): number[] {
  const needle = Buffer.from(`\0${TASK_ENV_MARK}=${taskId}\0`);
  const first = Buffer.from(`${TASK_ENV_MARK}=${taskId}\0`);
  const found: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return found;
  }
  for (const name of entries) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) continue;
    let environ: Buffer;
    try {
      environ = readFileSync(`/proc/${pid}/environ`);
    } catch {
      continue;
    }
    if (environ.includes(needle) || environ.subarray(0, first.length).equals(first)) {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z') found.push(pid);
      } catch {
        // gone meanwhile
      }
    }
  }
  return found;
}

/** Signal each pid; ESRCH (already gone) is fine. */
export function signalAll(pids: readonly number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // gone
    }
  }
}
