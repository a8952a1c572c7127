// Just enough /proc reading for the tests to tell whether a process (or its process group) is
// still there, without mistaking a reused pid for one of ours. Linux only, like Fledge's
// process runtime.
import { readdirSync, readFileSync } from 'node:fs';

interface Stat {
  state: string;
  pgrp: number;
  startTime: number;
}

function readStat(pid: number): Stat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // comm (field 2) may contain spaces and parens: split after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const state = rest[0];
  const pgrp = Number(rest[2]);
  const startTime = Number(rest[19]);
  if (state === undefined || !Number.isFinite(startTime)) return undefined;
  return { state, pgrp, startTime };
}

/** The /proc start time of pid (clock ticks since boot), or undefined when it does not exist. */
export function startTimeOf(pid: number): number | undefined {
  return readStat(pid)?.startTime;
}

/** pid runs (not a zombie) and, when startTime is given, is the very process that started then. */
export function isRunning(pid: number, startTime?: number): boolean {
  const stat = readStat(pid);
  return stat !== undefined && stat.state !== 'Z' && (startTime === undefined || stat.startTime === startTime);
}

/** Non-zombie members of process group pgid. */
export function groupMembers(pgid: number): number[] {
  const members: number[] = [];
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return members;
  }
  for (const name of names) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    const stat = readStat(pid);
    if (stat && stat.pgrp === pgid && stat.state !== 'Z') members.push(pid);
  }
  return members;
}

/**
 * Whether the group led by (pid, startTime) may be signalled as ours: the leader is the recorded
 * process (by start time), or it is gone (Linux does not reuse a pid while a group of that id has members).
 */
export function groupIsOurs(pid: number, startTime: number | undefined): boolean {
  const stat = readStat(pid);
  return stat === undefined || (startTime !== undefined && stat.startTime === startTime);
}

/** SIGKILL a process group; false when there was nothing to signal. */
export function killGroup(pgid: number, signal: NodeJS.Signals = 'SIGKILL'): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}
