// The on-disk side of a task: its sandbox directory, task.json, the exit record and the wrapper
// script that writes it. Everything the runtime knows about a task can be rebuilt from here.
import { constants as osConstants } from 'node:os';
import { closeSync, existsSync, openSync, readFileSync, readSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { TaskSpec, TaskStatus } from '../types.ts';

export type ExitStatus = Extract<TaskStatus, { state: 'exited' }>;

/** task.json: written once, before start() returns. */
export interface TaskFile {
  version: 1;
  taskId: string;
  /** the wrapper: process-group leader of the task */
  pid: number;
  /** /proc starttime of pid, so a reused pid is never taken for the task */
  startTime: number;
  /** epoch millis */
  startedAt: number;
  host: string;
  /** the machine it runs on (machineIdentity()); absent in sandboxes of older versions */
  machine?: string;
  ports: number[];
  /** the task's cgroup v2 directory, when the machine let Fledge make one */
  cgroup?: string;
  spec: TaskSpec;
}

export const EXIT_FILE = 'exit';
export const TASK_FILE = 'task.json';
export const SERVICE_PID_FILE = 'service.pid';

/**
 * The wrapper, run as `/bin/sh -c WRAPPER fledge-task <cgroup.procs or -> <argv...>` with
 * cwd = the sandbox.
 * - Moves itself into the task's cgroup first (when there is one), so everything the task ever
 *   starts is a member, even what leaves the process group.
 * - Traps (not ignores) TERM/INT/HUP/QUIT: a trapped signal is deferred while a foreground
 *   command runs, so the wrapper outlives a group-wide SIGTERM; and caught signals are reset
 *   to default in the child, so the task sees ordinary signal dispositions. (Ignoring with
 *   `trap ''` would be inherited; a background job would get SIGINT/SIGQUIT ignored.)
 * - Runs the task in the foreground through a shell that writes its own pid to service.pid
 *   and execs the task: that pid is the service's own process, which the API reports.
 * - Records `$?` (128+n when killed by signal n) through a rename, so a reader sees either no
 *   record or a whole one. PATH is reset after the task so an odd task PATH cannot break it,
 *   and the umask only then, so the record is 0600 while the task ran with Fledge's own umask.
 */
export const WRAPPER = [
  'trap : TERM INT HUP QUIT',
  '[ "$1" = - ] || { printf \'%s\\n\' "$$" > "$1"; } 2>/dev/null',
  'shift',
  `/bin/sh -c 'printf "%s\\n" "$$" > ${SERVICE_PID_FILE}; exec "$@"' fledge-service "$@"`,
  'code=$?',
  'PATH=/usr/local/bin:/usr/bin:/bin:$PATH',
  'umask 077',
  `printf '%s\\n' "$code" > ${EXIT_FILE}.tmp && mv -f ${EXIT_FILE}.tmp ${EXIT_FILE}`,
  'exit "$code"',
].join('\n');

/** The service's own pid (the process the wrapper's child exec'd into), once it started. */
export function readServicePid(sandbox: string): number | undefined {
  try {
    const pid = Number(readFileSync(path.join(sandbox, SERVICE_PID_FILE), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Directory name for a task id: safe as one path segment. */
export function sandboxName(taskId: string): string {
  const name = encodeURIComponent(taskId);
  return name.startsWith('.') ? `%2E${name.slice(1)}` : name;
}

export function sandboxPath(dataDir: string, taskId: string): string {
  return path.join(dataDir, 'tasks', sandboxName(taskId));
}

/** Written 0600: task.json holds the deploy's env, which may be secrets. */
export function writeJsonAtomic(file: string, value: unknown): void {
  const tmp = `${file}.tmp`;
  // A leftover temp file would keep its own mode: start from none.
  rmSync(tmp, { force: true });
  writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
}

export function readTaskFile(sandbox: string): TaskFile | undefined {
  try {
    const parsed = JSON.parse(readFileSync(path.join(sandbox, TASK_FILE), 'utf8')) as Partial<TaskFile>;
    if (typeof parsed.taskId !== 'string' || typeof parsed.pid !== 'number' || typeof parsed.startTime !== 'number') return undefined;
    return {
      version: 1,
      taskId: parsed.taskId,
      pid: parsed.pid,
      startTime: parsed.startTime,
      startedAt: typeof parsed.startedAt === 'number' ? parsed.startedAt : 0,
      host: typeof parsed.host === 'string' ? parsed.host : '127.0.0.1',
      ...(typeof parsed.machine === 'string' ? { machine: parsed.machine } : {}),
      ports: Array.isArray(parsed.ports) ? parsed.ports.filter((p): p is number => typeof p === 'number') : [],
      ...(typeof parsed.cgroup === 'string' ? { cgroup: parsed.cgroup } : {}),
      spec: parsed.spec as TaskSpec,
    };
  } catch {
    return undefined;
  }
}

const signalNames = new Map<number, string>(Object.entries(osConstants.signals).map(([name, n]) => [n, name]));

/**
 * Turn an exit record into a status. The wrapper writes a shell status; the runtime writes a
 * signal name when the wrapper died without recording (e.g. SIGKILL, UNKNOWN). A status of
 * 128+n reads as "killed by signal n": a task that *exits* 143 on purpose looks the same.
 */
export function parseExitRecord(text: string, finishedAt: number): ExitStatus | undefined {
  const line = text.trim();
  if (/^\d+$/.test(line)) {
    const status = Number(line);
    const signal = status > 128 ? signalNames.get(status - 128) : undefined;
    return signal
      ? { state: 'exited', exitCode: null, signal, finishedAt }
      : { state: 'exited', exitCode: status, signal: null, finishedAt };
  }
  if (/^[A-Z][A-Z0-9]*$/.test(line)) return { state: 'exited', exitCode: null, signal: line, finishedAt };
  return undefined;
}

export function readExit(sandbox: string): ExitStatus | undefined {
  const file = path.join(sandbox, EXIT_FILE);
  try {
    const text = readFileSync(file, 'utf8');
    return parseExitRecord(text, Math.round(statSync(file).mtimeMs));
  } catch {
    return undefined;
  }
}

/** Record an exit the wrapper could not record itself. Never overwrites the wrapper's record. */
export function writeExitSignal(sandbox: string, signal: string): void {
  if (!existsSync(sandbox) || readExit(sandbox)) return;
  const file = path.join(sandbox, EXIT_FILE);
  writeFileSync(`${file}.runtime`, `${signal}\n`, { mode: 0o600 });
  renameSync(`${file}.runtime`, file);
}

/** An exit this soon after start, with this on stderr, was a port taken by someone else. */
export const PORT_IN_USE_WITHIN_MS = 60_000;
const PORT_IN_USE = /EADDRINUSE|address already in use/i;
const STDERR_TAIL_BYTES = 8_192;

/**
 * The exit marked `portInUse` when the task failed (non-zero or signal) within
 * PORT_IN_USE_WITHIN_MS of its start and the tail of its stderr says a bind failed with
 * EADDRINUSE ("address already in use"). How a runtime learns what the task itself cannot say.
 */
export function classifyExit(sandbox: string, status: ExitStatus, startedAt: number | undefined): ExitStatus {
  if (status.portInUse !== undefined || status.exitCode === 0) return status;
  if (startedAt === undefined || status.finishedAt - startedAt > PORT_IN_USE_WITHIN_MS) return status;
  return PORT_IN_USE.test(readTail(path.join(sandbox, 'stderr'), STDERR_TAIL_BYTES)) ? { ...status, portInUse: true } : status;
}

function readTail(file: string, bytes: number): string {
  try {
    const size = statSync(file).size;
    const fd = openSync(file, 'r');
    try {
      const buffer = Buffer.alloc(Math.min(size, bytes));
      readSync(fd, buffer, 0, buffer.length, Math.max(0, size - buffer.length));
      return buffer.toString('utf8');
    } finally {
      closeSync(fd);
    }
  } catch {
    return '';
  }
}
