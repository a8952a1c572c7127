// The runtime spec of a job's run: the task's spec as its deploy makes it, with what its run
// asked for on top (commandLineArgs appended, envOverrides merged, resources replaced field by
// field). Other tasks' specs are returned unchanged.
import type { Deploy, TaskRecord } from '../core/model.ts';
import type { TaskSpec } from '../runtimes/types.ts';

export function withRun(spec: TaskSpec, task: TaskRecord, deploy: Deploy): TaskSpec {
  const run = task.run;
  if (!run) return spec;
  const args = run.commandLineArgs ?? [];
  const resources = { numPorts: spec.numPorts, cpus: spec.cpus, memoryMb: spec.memoryMb, ...(run.resources ?? {}) };
  const out: TaskSpec = { ...spec, env: { ...spec.env, ...(run.envOverrides ?? {}) }, ...pick(resources) };
  if (args.length > 0) {
    // Appended where the task's argv is: a container's Cmd (unless it runs a shell), a process's
    // arguments when it has some. A shell command gets them quoted, so they arrive as given.
    const asArgv = deploy.containerInfo?.docker ? !spec.shell : (spec.arguments?.length ?? 0) > 0;
    if (asArgv) out.arguments = [...(spec.arguments ?? []), ...args];
    else out.command = [spec.command ?? '', ...args.map(shellQuote)].join(' ');
  }
  return out;
}

function pick(r: { numPorts: number; cpus: number; memoryMb: number }) {
  return { numPorts: r.numPorts, cpus: r.cpus, memoryMb: r.memoryMb };
}

export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_./=:,+@%-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}
