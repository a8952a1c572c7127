// Requests and deploys of examples/http-service.mjs with fast health checks, and the waits
// the integration tests share (deploy results, healthy tasks, a task answering on its port).
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type {
  DeployBody,
  DeployHistoryView,
  DeployInput,
  DeployResult,
  FledgeClient,
  RequestInput,
  TaskView,
} from '../../src/api/client.ts';
import { REPO_ROOT, trackTasks } from './fledge-process.ts';
import { waitFor } from './wait-for.ts';

export const EXAMPLE_SERVICE = path.join(REPO_ROOT, 'examples', 'http-service.mjs');

/** Single-quote for /bin/sh. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The command line that runs a Node script with this very node binary. */
export function nodeCommand(script: string, ...args: string[]): string {
  return [process.execPath, script, ...args].map(shellQuote).join(' ');
}

/** A command that runs inline JavaScript with this node binary. */
export function nodeEval(code: string): string {
  return `${shellQuote(process.execPath)} -e ${shellQuote(code)}`;
}

export const FAST_HEALTHCHECK = { uri: '/health', startupIntervalSeconds: 0.1, intervalSeconds: 0.5 } as const;

export function serviceRequest(id: string, instances: number, extra: Partial<RequestInput> = {}): RequestInput {
  return { id, requestType: 'SERVICE', instances, ...extra };
}

export interface ExampleDeployOptions {
  /** env for the service; VERSION defaults to the deploy id */
  env?: Record<string, string>;
  /** any other deploy fields (override the defaults below) */
  deploy?: Partial<DeployInput>;
  /** POST /api/deploys body fields besides `deploy` */
  body?: Omit<DeployBody, 'deploy'>;
}

/** A deploy of the example HTTP service with fast health checks. */
export function exampleDeploy(requestId: string, deployId: string, options: ExampleDeployOptions = {}): DeployBody {
  return {
    ...options.body,
    deploy: {
      requestId,
      id: deployId,
      command: nodeCommand(EXAMPLE_SERVICE),
      env: { VERSION: deployId, ...options.env },
      healthcheck: { ...FAST_HEALTHCHECK },
      deployHealthTimeoutSeconds: 30,
      ...options.deploy,
    },
  };
}

/** Write a deploy body as JSON (for the CLI's `deploy create -f`). */
export function writeDeployFile(dir: string, body: DeployBody, name = `${body.deploy.id}.json`): string {
  const file = path.join(dir, name);
  writeFileSync(file, JSON.stringify(body, null, 2));
  return file;
}

export type FinishedDeploy = DeployHistoryView & { deployResult: DeployResult };

/** Poll the deploy's history entry until it has a result. */
export async function waitForDeployResult(
  client: FledgeClient,
  requestId: string,
  deployId: string,
  timeoutMs = 30_000,
): Promise<FinishedDeploy> {
  return waitFor(
    async () => {
      const entry = await client.deployHistoryEntry(requestId, deployId);
      return entry.deployResult ? (entry as FinishedDeploy) : undefined;
    },
    { timeoutMs, intervalMs: 100, message: `deploy ${requestId}/${deployId} to finish` },
  );
}

export const isHealthy = (t: TaskView) => t.state === 'TASK_RUNNING' && t.health?.state === 'HEALTHY' && !t.cleanup;

/**
 * Wait until the request has exactly `count` live tasks that are not being cleaned up, all
 * healthy (and of `deployId` when given); resolves to them, sorted by instance number.
 * With `exclusive`, tasks on their way out must be gone too; `notIds` must not be among them.
 */
export async function waitForHealthyTasks(
  client: FledgeClient,
  requestId: string,
  options: { count: number; deployId?: string; exclusive?: boolean; timeoutMs?: number; notIds?: readonly string[] },
): Promise<TaskView[]> {
  return waitFor(
    async () => {
      const tasks = await client.requestTasks(requestId);
      trackTasks(tasks);
      const serving = tasks.filter((t) => !t.cleanup);
      if (options.exclusive && serving.length !== tasks.length) return undefined;
      if (serving.length !== options.count || !serving.every(isHealthy)) return undefined;
      if (options.deployId !== undefined && !serving.every((t) => t.taskId.deployId === options.deployId)) return undefined;
      if (options.notIds && serving.some((t) => options.notIds!.includes(t.taskId.id))) return undefined;
      return serving.sort((a, b) => a.taskId.instanceNo - b.taskId.instanceNo);
    },
    {
      timeoutMs: options.timeoutMs ?? 30_000,
      intervalMs: 100,
      message: `${options.count} healthy tasks of ${requestId}${options.deployId ? ` (deploy ${options.deployId})` : ''}`,
    },
  );
}

export interface ServiceAnswer {
  version: string;
  task: string;
  instance: string;
  path: string;
}

/** GET / on the task's first port: the example service names its version and task. */
export async function askService(port: number): Promise<ServiceAnswer> {
  const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(5_000) });
  if (!res.ok) throw new Error(`port ${port}: HTTP ${res.status}`);
  return (await res.json()) as ServiceAnswer;
}

/** The task's first port. */
export function portOf(t: TaskView): number {
  const port = t.ports[0];
  if (port === undefined) throw new Error(`task ${t.taskId.id} has no port`);
  return port;
}

/** Create (or update) a SERVICE request and run a deploy of the example service to SUCCEEDED. */
export async function deployExample(
  client: FledgeClient,
  requestId: string,
  deployId: string,
  options: ExampleDeployOptions & { instances: number; timeoutMs?: number },
): Promise<TaskView[]> {
  await client.createRequest(serviceRequest(requestId, options.instances));
  await client.createDeploy(exampleDeploy(requestId, deployId, options));
  const done = await waitForDeployResult(client, requestId, deployId, options.timeoutMs);
  if (done.deployResult.deployState !== 'SUCCEEDED') {
    throw new Error(`deploy ${deployId} ended ${done.deployResult.deployState}: ${JSON.stringify(done.deployResult)}`);
  }
  return waitForHealthyTasks(client, requestId, { count: options.instances, deployId, exclusive: true, timeoutMs: options.timeoutMs });
}
