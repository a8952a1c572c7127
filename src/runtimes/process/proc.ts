// Reading /proc: who is alive, since when, and in which process group. Linux only, like the
// process runtime. Reads are synchronous on purpose: procfs never blocks on a disk, and a
// read right after spawn() must see the child before the event loop can reap it.
import { readdirSync, readFileSync } from 'node:fs';

export interface ProcStat {
  pid: number;
  /** R, S, D, Z (zombie: dead, not yet reaped), ... */
  state: string;
  ppid: number;
  pgrp: number;
  /** field 22: clock ticks since boot; with the pid, identifies one process for ever */
  startTime: number;
}

/** Parse /proc/<pid>/stat; comm (field 2) may hold spaces and parens, so split after the last ')'. */
export function parseStat(pid: number, text: string): ProcStat | undefined {
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  const rest = text.slice(close + 2).split(' ');
  // rest[0] is field 3
  const field = (n: number) => rest[n - 3];
  const state = field(3);
  const startTime = Number(field(22));
  if (state === undefined || !Number.isFinite(startTime)) return undefined;
  return { pid, state, ppid: Number(field(4)), pgrp: Number(field(5)), startTime };
}

export function readStat(pid: number): ProcStat | undefined {
  try {
    return parseStat(pid, readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** The process start time of pid, or undefined when there is no such process. */
export function readStartTime(pid: number): number | undefined {
  return readStat(pid)?.startTime;
}

export function readCmdline(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return undefined;
  }
}

/** pid is running (not a zombie) and is the very process that started at startTime. */
export function isAlive(pid: number, startTime: number): boolean {
  const stat = readStat(pid);
  return stat !== undefined && stat.state !== 'Z' && stat.startTime === startTime;
}

/**
 * Whether the process group led by (pid, startTime) may be signalled as ours. While the leader
 * lives it must be the recorded process; once it is gone, Linux does not hand its pid out again
 * while its group has members, so a group of that id is still ours.
 */
export function groupIsOurs(pid: number, startTime: number): boolean {
  const stat = readStat(pid);
  return stat === undefined || stat.startTime === startTime;
}

/** Non-zombie members of a process group (a /proc scan: only for stop and exit clean-up). */
export function groupMembers(pgid: number): number[] {
  const members: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return members;
  }
  for (const name of entries) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    const stat = readStat(pid);
    if (stat && stat.pgrp === pgid && stat.state !== 'Z') members.push(pid);
  }
  return members;
}

/** Signal a whole process group; false when it has no members (or is not ours to signal). */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}
