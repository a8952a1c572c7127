// A task's environment, the same for every runtime: Fledge's variables and Singularity's
// (SingularityMesosTaskBuilder's), with Singularity's ${TASK_*} placeholders filled in the
// deploy's env and taskEnv values and in the command, as Singularity does for env values.
//
// Precedence, as in Singularity: its task variables first, the deploy's env and taskEnv over
// them; then PORT, PORT0..n and Fledge's TASK_ID, REQUEST_ID, DEPLOY_ID, INSTANCE_NO last,
// so nothing a deploy says can move a task off its ports or out of its identity.
import type { TaskSpec } from './types.ts';

/** Where the task runs: the address its ports answer on (TASK_HOST). */
export interface TaskPlace {
  host: string;
}

/** `${NAME}` → value for Singularity's task placeholders. */
export function placeholderValues(spec: TaskSpec, place: TaskPlace): Record<string, string> {
  return {
    TASK_REQUEST_ID: spec.requestId,
    TASK_DEPLOY_ID: spec.deployId,
    TASK_STARTED_AT: String(spec.startedAt ?? 0),
    TASK_INSTANCE_NO: String(spec.instanceNo),
    TASK_HOST: place.host,
    TASK_RACK_ID: spec.rackId ?? 'local',
    TASK_ID: spec.taskId,
  };
}

/** Replaces each `${TASK_…}` placeholder Singularity knows; anything else (`$PORT0`, `${HOME}`) is left to the shell. */
export function fillPlaceholders(text: string, values: Record<string, string>): string {
  return text.replace(/\$\{(TASK_[A-Z_]+)\}/g, (whole, name: string) => values[name] ?? whole);
}

export function taskEnvironment(
  spec: TaskSpec,
  place: TaskPlace,
  ports: number[],
  base: Record<string, string> = {},
): Record<string, string> {
  const values = placeholderValues(spec, place);
  const env: Record<string, string> = {
    ...base,
    INSTANCE_NO: String(spec.instanceNo),
    TASK_HOST: place.host,
    TASK_RACK_ID: values.TASK_RACK_ID as string,
    AVAILABILITY_ZONE: values.TASK_RACK_ID as string,
    TASK_REQUEST_ID: spec.requestId,
    TASK_DEPLOY_ID: spec.deployId,
    TASK_ID: spec.taskId,
    ESTIMATED_INSTANCE_COUNT: String(spec.estimatedInstanceCount ?? 1),
  };
  for (const [k, v] of Object.entries(spec.env)) env[k] = fillPlaceholders(v, values);
  ports.forEach((port, i) => (env[`PORT${i}`] = String(port)));
  if (ports.length > 0) env.PORT = String(ports[0]);
  env.TASK_ID = spec.taskId;
  env.REQUEST_ID = spec.requestId;
  env.DEPLOY_ID = spec.deployId;
  env.INSTANCE_NO = String(spec.instanceNo);
  return env;
}

/** The spec's command and arguments with the placeholders filled. */
export function taskCommand(spec: TaskSpec, place: TaskPlace): Pick<TaskSpec, 'command' | 'arguments'> {
  const values = placeholderValues(spec, place);
  return {
    ...(spec.command !== undefined ? { command: fillPlaceholders(spec.command, values) } : {}),
    ...(spec.arguments !== undefined ? { arguments: spec.arguments.map((a) => fillPlaceholders(a, values)) } : {}),
  };
}
