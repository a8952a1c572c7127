// The runtime spec of a task: its deploy's command, env, resources and container, with what its
// run asked for on top (commandLineArgs appended, envOverrides merged, resources replaced field
// by field).
import type { Deploy, TaskRecord } from '../core/model.ts';
import type { TaskSpec } from '../runtimes/types.ts';

export function runSpec(task: TaskRecord, deploy: Deploy, host?: string): TaskSpec {
  const run = task.run;
  const args = run?.commandLineArgs ?? [];
  const env = { ...deploy.env, ...(deploy.taskEnv[String(task.taskId.instanceNo)] ?? {}), ...(run?.envOverrides ?? {}) };
  const resources = { ...deploy.resources, ...(run?.resources ?? {}) };
  const docker = deploy.containerInfo?.docker;
  let command = deploy.command;
  let argv = deploy.arguments;
  if (args.length > 0) {
    // Appended where the task's argv is: a container's Cmd (unless it runs a shell), a process's
    // arguments when it has some. A shell command gets them quoted, so they arrive as given.
    const asArgv = docker ? !deploy.shell : (deploy.arguments?.length ?? 0) > 0;
    if (asArgv) argv = [...(deploy.arguments ?? []), ...args];
    else command = [deploy.command ?? '', ...args.map(shellQuote)].join(' ');
  }
  return {
    taskId: task.taskId.id,
    requestId: task.taskId.requestId,
    deployId: task.taskId.deployId,
    instanceNo: task.taskId.instanceNo,
    ...(host !== undefined ? { host } : {}),
    ...(command !== undefined ? { command } : {}),
    ...(argv !== undefined ? { arguments: argv } : {}),
    ...(deploy.shell !== undefined ? { shell: deploy.shell } : {}),
    ...(docker ? { container: { docker, volumes: deploy.containerInfo?.volumes ?? [] } } : {}),
    env,
    numPorts: resources.numPorts,
    cpus: resources.cpus,
    memoryMb: resources.memoryMb,
  };
}

export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_./=:,+@%-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}
