// The `fledge` command line against a real server: listing requests and running a deploy with
// --watch, whose exit code says whether the deploy succeeded.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { exampleDeploy, nodeEval, serviceRequest, waitForHealthyTasks, writeDeployFile } from '../helpers/example-service.ts';
import { cleanup, leakedProcesses, seenProcessCount, startFledgeProcess, type FledgeProcess } from '../helpers/fledge-process.ts';
import { reservePorts } from '../helpers/ports.ts';
import { runCli } from '../helpers/run-cli.ts';

const PORTS = reservePorts(100);

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'fledge-cli-'));
});
afterEach(async () => {
  await cleanup();
  rmSync(dir, { recursive: true, force: true });
});
afterAll(async () => {
  await cleanup();
  expect(seenProcessCount()).toBeGreaterThan(0);
  expect(leakedProcesses()).toEqual([]);
});

async function serverWithRequest(): Promise<FledgeProcess> {
  const fledge = await startFledgeProcess({ portRange: PORTS });
  await fledge.client.createRequest(serviceRequest('web', 2));
  return fledge;
}

describe('fledge CLI', () => {
  it('lists requests with `request list`', async () => {
    const fledge = await serverWithRequest();
    const res = await runCli(['request', 'list'], { url: fledge.url, dataDir: fledge.dataDir });
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/\bweb\b/);
  });

  it('exits 0 from `deploy create --watch` when the deploy succeeds', async () => {
    const fledge = await serverWithRequest();
    const file = writeDeployFile(dir, exampleDeploy('web', 'v1'));
    const res = await runCli(['deploy', 'create', '-f', file, '--watch'], { url: fledge.url, dataDir: fledge.dataDir });
    expect(res.code, res.stdout + res.stderr).toBe(0);
    expect(res.stdout).toMatch(/deploy v1 SUCCEEDED/);
    await waitForHealthyTasks(fledge.client, 'web', { count: 2, deployId: 'v1' });
  });

  it('exits 1 from `deploy create --watch` when the deploy fails', async () => {
    const fledge = await serverWithRequest();
    const file = writeDeployFile(dir, exampleDeploy('web', 'broken', { deploy: { command: nodeEval('process.exit(2)') } }));
    const res = await runCli(['deploy', 'create', '-f', file, '--watch'], { url: fledge.url, dataDir: fledge.dataDir });
    expect(res.code, res.stdout + res.stderr).toBe(1);
    expect(res.stdout).toMatch(/deploy broken FAILED/);
  });
});
