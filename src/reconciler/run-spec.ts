// The runtime spec of a task: its deploy's command, env and resources, with what its run asked
// for on top (commandLineArgs appended, envOverrides merged, resources replaced field by field).
import type { Deploy, TaskRecord } from '../core/model.ts';
import type { TaskSpec } from '../runtimes/types.ts';

export function runSpec(task: TaskRecord, deploy: Deploy): TaskSpec {
  const run = task.run;
  const args = run?.commandLineArgs ?? [];
  const env = { ...deploy.env, ...(deploy.taskEnv[String(task.taskId.instanceNo)] ?? {}), ...(run?.envOverrides ?? {}) };
  const resources = { ...deploy.resources, ...(run?.resources ?? {}) };
  const argv = deploy.arguments !== undefined && deploy.arguments.length > 0 ? [...deploy.arguments, ...args] : undefined;
  // A shell command gets the arguments quoted, so they arrive as given (no expansion).
  const command = deploy.command !== undefined && args.length > 0 ? `${deploy.command} ${args.map(shellQuote).join(' ')}` : deploy.command;
  return {
    taskId: task.taskId.id,
    requestId: task.taskId.requestId,
    deployId: task.taskId.deployId,
    instanceNo: task.taskId.instanceNo,
    ...(command !== undefined ? { command } : {}),
    ...(argv !== undefined ? { arguments: argv } : deploy.arguments !== undefined ? { arguments: deploy.arguments } : {}),
    env,
    numPorts: resources.numPorts,
    cpus: resources.cpus,
    memoryMb: resources.memoryMb,
  };
}

export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_./=:,+@%-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}
