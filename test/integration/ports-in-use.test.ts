// Ports that are really free (issue 9, item 5): a task that dies at start because a port it
// binds was taken by another process (EADDRINUSE on its stderr) is started again on other
// ports without counting against the deploy's failure budget.
import net from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  EXAMPLE_SERVICE,
  exampleDeploy,
  nodeEval,
  serviceRequest,
  waitForDeployResult,
  waitForHealthyTasks,
} from '../helpers/example-service.ts';
import { cleanup, freePort, leakedProcesses, startFledgeProcess } from '../helpers/fledge-process.ts';
import { reservePorts } from '../helpers/ports.ts';

const PORTS = reservePorts(50);

afterEach(cleanup);
afterAll(async () => {
  await cleanup();
  expect(leakedProcesses()).toEqual([]);
});

describe('a port taken between the check and the bind', () => {
  it('is retried on another port, not counted: a deploy allowing no failure succeeds', async () => {
    const taken = net.createServer();
    const takenPort = await freePort();
    await new Promise<void>((resolve) => taken.listen(takenPort, '127.0.0.1', resolve));
    try {
      const marks = mkdtempSync(path.join(tmpdir(), 'fledge-eaddrinuse-'));
      // First run of each instance: bind the taken port (EADDRINUSE, exit 1); later runs: the service.
      const firstRunBindsTaken = `
        const fs = require('fs');
        const mark = require('path').join(process.env.MARKS, process.env.INSTANCE_NO);
        if (!fs.existsSync(mark)) {
          fs.writeFileSync(mark, '');
          require('net').createServer().listen(Number(process.env.TAKEN), '127.0.0.1');
        } else {
          import(process.env.SERVICE);
        }`;
      const fledge = await startFledgeProcess({ portRange: PORTS });
      await fledge.client.createRequest(serviceRequest('web', 2));
      await fledge.client.createDeploy(
        exampleDeploy('web', 'v1', {
          env: { MARKS: marks, TAKEN: String(takenPort), SERVICE: EXAMPLE_SERVICE },
          deploy: { command: nodeEval(firstRunBindsTaken) },
        }),
      );
      const done = await waitForDeployResult(fledge.client, 'web', 'v1', 60_000);
      expect(done.deployResult).toMatchObject({ deployState: 'SUCCEEDED', deployFailures: [] });
      const serving = await waitForHealthyTasks(fledge.client, 'web', { count: 2, deployId: 'v1', exclusive: true });
      expect(serving).toHaveLength(2);
      // The first task of each instance is on record: failed, its port taken, and why.
      const history = await fledge.client.deployHistoryEntry('web', 'v1');
      const retried = (history.decisionLog ?? []).filter((d) => d.kind === 'TASK_RETRIED');
      expect(retried).toHaveLength(2);
      for (const d of retried) {
        const t = await fledge.client.getTask((d as { taskId: string }).taskId);
        expect(t).toMatchObject({ state: 'TASK_FAILED', exitCode: 1, portInUse: true });
        expect(t.taskUpdates?.at(-1)?.statusMessage).toMatch(/EADDRINUSE/);
      }
    } finally {
      await new Promise<void>((resolve) => taken.close(() => resolve()));
    }
  });
});
