// The `fledge` command line against a real server: listing requests and running a deploy with
// --watch, whose exit code says whether the deploy succeeded.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  exampleDeploy,
  nodeEval,
  serviceRequest,
  waitForDeployResult,
  waitForHealthyTasks,
  writeDeployFile,
} from '../helpers/example-service.ts';
import { cleanup, leakedProcesses, seenProcessCount, startFledgeProcess, type FledgeProcess } from '../helpers/fledge-process.ts';
import { reservePorts } from '../helpers/ports.ts';
import { runCli } from '../helpers/run-cli.ts';
import { waitFor } from '../helpers/wait-for.ts';

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

  describe('guiding a canary', () => {
    const LB = { serviceBasePath: '/web', loadBalancerGroups: ['default'] };
    const MANUAL = { canaryDeploySettings: { enableCanaryDeploy: true, instanceGroupSize: 1, acceptanceMode: 'MANUAL' as const } };

    async function withV1(): Promise<FledgeProcess> {
      const fledge = await startFledgeProcess({ portRange: PORTS });
      await fledge.client.createRequest(serviceRequest('web', 2, { loadBalanced: true }));
      await fledge.client.createDeploy(exampleDeploy('web', 'v1', { deploy: LB }));
      await waitForDeployResult(fledge.client, 'web', 'v1');
      return fledge;
    }

    it('at a gate the watch says what it waits for and what to type; advance prints the state after it; the watch ends once capacity settled', async () => {
      const fledge = await withV1();
      const opts = { url: fledge.url, dataDir: fledge.dataDir, timeoutMs: 90_000 };
      const logFile = path.join(dir, 'watch.log');
      const file = writeDeployFile(dir, exampleDeploy('web', 'v2', { deploy: { ...LB, ...MANUAL } }));
      const watching = runCli(['deploy', 'create', '-f', file, '--watch', '--log', logFile], opts);
      const atGate = (step: number) =>
        waitFor(
          async () => {
            const p = (await fledge.client.getRequest('web')).pendingDeployState?.deployProgress;
            return p?.phase === 'ACCEPTANCE' && p.step === step;
          },
          { timeoutMs: 30_000, message: `v2 waiting at step ${step}` },
        );
      await atGate(1);
      const advanced = await runCli(['deploy', 'advance', 'web', 'v2', '-m', 'looks good'], opts);
      expect(advanced.code, advanced.stderr).toBe(0);
      // The state once the loop acted: no longer step 1's acceptance.
      expect(advanced.stdout).toMatch(/^request web: ACTIVE/);
      expect(advanced.stdout).not.toMatch(/now at step 1\/2 ACCEPTANCE/);
      expect(advanced.stdout).toMatch(/now at step 2\/2|deploy v2 SUCCEEDED|waiting for your approval of step 2\/2/);
      const p = (await fledge.client.getRequest('web')).pendingDeployState?.deployProgress;
      if (p) {
        await atGate(2);
        expect((await runCli(['deploy', 'advance', 'web', 'v2'], opts)).code).toBe(0);
      }
      const res = await watching;
      expect(res.code, res.stdout + res.stderr).toBe(0);
      expect(res.stdout).toContain('... waiting for your approval of step 1/2 (MANUAL acceptance), up to ');
      expect(res.stdout).toContain('  continue:  fledge deploy advance web v2\n');
      expect(res.stdout).toContain('  fail it:   fledge deploy reject web v2 -m "why"');
      expect(res.stdout).toContain('  stop:      fledge deploy cancel web v2\n');
      // piped: no colour, no redraw
      expect(res.stdout).not.toContain('\u001b[');
      expect(res.stdout).toMatch(/deploy v2 SUCCEEDED/);
      expect(res.stdout.trimEnd().split('\n').at(-1)).toBe('OK capacity: v2 at 2/2 healthy, in LB; nothing else running');
      const log = readFileSync(logFile, 'utf8');
      expect(log).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z step 1\/2 [A-Z_]+, new tasks: 1 wanted/m);
      expect(log).toContain('continue:  fledge deploy advance web v2');
      expect(log).toContain('capacity: v2 at 2/2 healthy, in LB');
    }, 120_000);

    it('on failure shows the stderr lines that say why, and waits for the old deploy back at full capacity', async () => {
      const fledge = await withV1();
      const opts = { url: fledge.url, dataDir: fledge.dataDir, timeoutMs: 90_000 };
      const broken = exampleDeploy('web', 'v3', {
        deploy: { ...LB, command: nodeEval("console.error('boom: DATABASE_URL is not set'); process.exit(3)") },
      });
      const res = await runCli(['deploy', 'create', '-f', writeDeployFile(dir, broken), '--watch'], opts);
      expect(res.code, res.stdout + res.stderr).toBe(1);
      expect(res.stdout).toMatch(/deploy v3 FAILED/);
      expect(res.stdout).toMatch(/ {4}stderr \(last 1 line\):\n {6}boom: DATABASE_URL is not set\n/);
      expect(res.stdout.trimEnd().split('\n').at(-1)).toBe('OK capacity: v1 back at 2/2 healthy, in LB; nothing else running');
      // and the task is named by request#instance or a prefix
      const failed = /failure \S+ (web-v3-\S+):/.exec(res.stdout)?.[1];
      expect(failed).toBeDefined();
      const shown = await runCli(['task', 'get', failed!.slice(0, failed!.length - 6)], opts);
      expect(shown.stdout + shown.stderr).toMatch(/no task|matches|boom: DATABASE_URL/);
      const byInstance = await runCli(['task', 'get', 'web#1'], opts);
      expect(byInstance.code, byInstance.stderr).toBe(0);
      expect(byInstance.stdout).toMatch(/^task +web-v1-\d+-1-/m);
      const missing = await runCli(['task', 'get', 'nosuch'], opts);
      expect(missing.code).toBe(3);
    }, 120_000);
  });
});
