// The web UI in a real browser (Debian's Chromium via playwright-core) against an in-process
// Fledge with real task processes: create a request and deploy from the UI, watch a MANUAL
// canary reach its acceptance wait live and advance it to SUCCEEDED; a failing deploy shows
// its reason and failed tasks; cancel from the UI; a task's log tail shows new lines; deep
// links, a deleted request and a server that went away. With auth on (the default): the
// token prompt, `/?token=` taken once, a read token's view. Every test saves screenshots at
// 1280 and 390 px in test-output/screenshots/.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Browser, Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FledgeClient, type DeployBody } from '../../src/api/client.ts';
import { loadConfig } from '../../src/config/index.ts';
import { startServer, type FledgeServer } from '../../src/server.ts';
import { reservePorts } from '../helpers/ports.ts';
import { killSandboxTasks } from '../helpers/process-cleanup.ts';
import { ensureUiBuilt, launchChromium, ROOT, screenshots, until } from '../helpers/ui-browser.ts';

const WAIT = 20_000;
const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
const NODE = q(process.execPath);
const SERVICE = `exec ${NODE} ${q(path.join(ROOT, 'examples', 'http-service.mjs'))}`;
const FAST_HEALTH = { uri: '/health', startupIntervalSeconds: 0.1, intervalSeconds: 0.5 };

let server: FledgeServer | undefined;
let client: FledgeClient;
let browser: Browser | undefined;
let page: Page;
let dataDir: string;

function deploy(requestId: string, id: string, extra: Record<string, unknown> = {}): DeployBody {
  return {
    deploy: {
      requestId,
      id,
      command: SERVICE,
      env: { VERSION: id },
      healthcheck: FAST_HEALTH,
      deployHealthTimeoutSeconds: 30,
      serviceBasePath: `/${requestId}`,
      loadBalancerGroups: ['default'],
      ...extra,
    },
  };
}

const MANUAL_CANARY = { canaryDeploySettings: { enableCanaryDeploy: true, instanceGroupSize: 1, acceptanceMode: 'MANUAL' } };

async function open(pathname: string): Promise<void> {
  await page.goto(new URL(pathname, server!.url).toString());
  await page.locator('main h1').first().waitFor({ timeout: WAIT });
}

const visible = (loc: Locator) => loc.waitFor({ state: 'visible', timeout: WAIT });
const hasText = (loc: Locator, text: string) =>
  until(async () => ((await loc.textContent()) ?? '').includes(text), `${loc.toString()} to contain ${JSON.stringify(text)}`, WAIT);

/** Confirm the open dialog with its submit button. */
async function confirm(label: string | RegExp): Promise<void> {
  const dialog = page.getByRole('dialog');
  await dialog.waitFor({ timeout: WAIT });
  await dialog.getByRole('button', { name: label }).click();
  await dialog.waitFor({ state: 'hidden', timeout: WAIT });
}

const TASK_PORTS = reservePorts(200);

beforeAll(async () => {
  ensureUiBuilt();
  dataDir = mkdtempSync(path.join(tmpdir(), 'fledge-ui-'));
  server = await startServer(
    loadConfig(
      {
        dataDir,
        host: '127.0.0.1',
        port: 0,
        lbPort: 0,
        portRangeFrom: TASK_PORTS.from,
        portRangeTo: TASK_PORTS.to,
        killGraceSeconds: 2,
        drainTimeoutSeconds: 2,
        logLevel: 'warn',
      },
      {},
    ),
  );
  client = new FledgeClient(server.url, {
    ...(server.adminToken ? { token: server.adminToken } : {}),
    fetch: (input, init) => fetch(input, { ...init, signal: init?.signal ?? AbortSignal.timeout(10_000) }),
  });
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(WAIT);
  // Signed in once, as a user following the link `fledge serve` prints: the token stays in this page's storage.
  await page.goto(`${server.url}/?token=${encodeURIComponent(server.adminToken ?? '')}`);
  await page.locator('.identity-name').waitFor({ timeout: WAIT });
}, 120_000);

afterAll(async () => {
  try {
    if (server) {
      for (const r of await client.listRequests().catch(() => [])) await client.deleteRequest(r.request.id).catch(() => undefined);
      const s = server;
      await until(async () => (await s.store.listTasks({ live: true })).length === 0, 'every task to end', 20_000).catch(() => undefined);
      await server.close();
      server = undefined;
    }
  } finally {
    await browser?.close();
    await killSandboxTasks(dataDir);
    rmSync(dataDir, { recursive: true, force: true });
  }
});

describe('web UI', () => {
  it('creates a request, deploys it, and advances a MANUAL canary watched live to SUCCEEDED', async () => {
    await open('/');
    await page.getByText('No requests yet').waitFor();
    await screenshots(page, '01-requests-empty');

    // Create the request from the UI.
    await page.getByRole('button', { name: 'New request' }).click();
    await page.getByLabel('Request JSON').fill(JSON.stringify({ id: 'web', requestType: 'SERVICE', instances: 2, loadBalanced: true }));
    await confirm('Create');
    await page.waitForURL('**/requests/web');
    await page.getByText('No deploy in progress').waitFor();

    // First deploy through the editor: validated by the server, plan shown, then confirmed.
    await page.getByRole('link', { name: 'New deploy', exact: true }).click();
    await page.waitForURL('**/requests/web/deploy');
    const editor = page.getByLabel('Deploy JSON');
    await editor.fill(JSON.stringify({ ...deploy('web', 'v1'), deploy: { ...deploy('web', 'v1').deploy, instancez: 2 } }, null, 2));
    await page.getByText('instancez').first().waitFor(); // the API's 400 names the unknown field
    expect(await page.getByRole('button', { name: 'Deploy', exact: true }).isDisabled()).toBe(true);
    await editor.fill(JSON.stringify(deploy('web', 'v1'), null, 2));
    await page.getByText('Valid. The plan below').waitFor();
    await page.getByRole('table', { name: 'Deploy steps' }).waitFor();
    await screenshots(page, '02-new-deploy-plan');
    await page.getByRole('button', { name: 'Deploy', exact: true }).click();
    await confirm('Start deploy');
    await page.waitForURL('**/requests/web/deploys/v1');
    await page.getByRole('heading', { name: /Result:\s*succeeded/i }).waitFor();

    // The MANUAL canary (2 steps of 1), watched on the request page without reloading.
    await open('/requests/web');
    await page.evaluate(() => ((window as unknown as { marker: number }).marker = 42));
    await client.createDeploy(deploy('web', 'v2', MANUAL_CANARY));
    const progressText = page.locator('.card .progress-text');
    await until(
      async () => (await progressText.textContent())?.includes('Step 1 of 2 · Acceptance'),
      'step 1 to wait for acceptance',
      WAIT,
    );
    await page.getByText('Waiting for approval').waitFor();
    expect(await page.locator('.tl-phase.tl-current .tl-phase-name').textContent()).toBe('Acceptance');
    await screenshots(page, '03-request-manual-acceptance-wait');

    await page
      .getByRole('group', { name: /Actions on deploy v2/ })
      .getByRole('button', { name: 'Advance' })
      .click();
    await confirm('Advance');
    await until(
      async () => (await progressText.textContent())?.includes('Step 2 of 2 · Acceptance'),
      'step 2 to wait for acceptance',
      WAIT,
    );
    await page
      .getByRole('group', { name: /Actions on deploy v2/ })
      .getByRole('button', { name: 'Advance' })
      .click();
    await confirm('Advance');
    await page.getByText('No deploy in progress').waitFor();
    expect(await page.evaluate(() => (window as unknown as { marker?: number }).marker)).toBe(42); // live, never reloaded

    await page.getByRole('link', { name: 'Deploy history' }).click();
    await page.waitForURL('**/requests/web/deploys');
    await visible(page.getByRole('row', { name: /v2/ }).locator('.badge', { hasText: 'succeeded' }));
    // who started it (deployMarker.user) and who approved each step (the audit log)
    await hasText(page.getByRole('row', { name: /v2/ }), 'started by admin');
    await hasText(page.getByRole('row', { name: /v2/ }), 'advanced by admin');
    await page.getByRole('link', { name: 'v2' }).click();
    await page.getByRole('heading', { name: /Result:\s*succeeded/i }).waitFor();
    await visible(page.getByRole('table', { name: 'Decision log' }));
    await screenshots(page, '04-deploy-v2-succeeded');
    expect((await client.getRequest('web')).activeDeploy?.id).toBe('v2');
  });

  it('shows a failed deploy with its reason and failed tasks', async () => {
    await client.createDeploy(deploy('web', 'v3', { command: 'echo "boom: no config" >&2; exit 3', healthcheck: FAST_HEALTH }));
    await open('/requests/web/deploys/v3');
    await page.getByRole('heading', { name: /Result:\s*failed/i }).waitFor();
    const result = page.locator('section.result');
    await visible(result.locator('.failures li').first());
    const reasons = await result.locator('.failures').textContent();
    expect(reasons).toMatch(/Task (failed on startup|failed health checks|expected running finished|never entered running)/);
    await visible(page.getByRole('heading', { name: 'Failed tasks' }));
    await until(async () => (await page.getByRole('table', { name: 'Failed tasks' }).getByRole('row').count()) > 1, 'failed task rows');
    // why, in the task's own words, right at the failure; what never ran says so
    await hasText(result.locator('.stderr-tail').first(), 'boom: no config');
    await visible(page.locator('.tl-phase-status', { hasText: 'not run' }).first());
    await screenshots(page, '05-deploy-v3-failed');

    // the history lists it as failed, with the reason
    await page.getByRole('link', { name: 'deploys' }).click();
    await visible(page.getByRole('row', { name: /v3/ }).locator('.badge', { hasText: 'failed' }));
    await screenshots(page, '06-deploy-history');
  });

  it('cancels a pending deploy from the UI', async () => {
    await client.createDeploy(deploy('web', 'v4', MANUAL_CANARY));
    // the list shows the pending deploy's progress as a bar, updated live
    await open('/');
    await hasText(page.getByRole('row', { name: /web/ }).locator('.progress-text'), 'Step 1 of 2 · Acceptance');
    await screenshots(page, '07-requests-pending-progress');
    await page.getByRole('link', { name: 'v4' }).click();
    await page.waitForURL('**/requests/web/deploys/v4');
    await page.getByText('Waiting for approval').waitFor();
    await page.getByRole('button', { name: 'Cancel deploy' }).click();
    await page
      .getByRole('dialog')
      .getByText(/ends CANCELED/)
      .waitFor();
    await screenshots(page, '08-cancel-confirm');
    await confirm('Cancel deploy');
    await page.getByRole('heading', { name: /Result:\s*canceled/i }).waitFor();
    await screenshots(page, '09-deploy-v4-canceled');
    expect((await client.deployHistoryEntry('web', 'v4')).deployResult?.deployState).toBe('CANCELED');
  });

  it('keeps the last result with where capacity is, until dismissed', async () => {
    // v4 was canceled: the request page says so, and that v2 serves again
    await open('/requests/web');
    const banner = page.locator('section.result', { has: page.getByRole('heading', { name: /Last deploy/ }) });
    await hasText(banner, 'v4');
    await hasText(banner, 'canceled');
    await hasText(banner, 'Back on v2: 2 of 2 wanted healthy and in the load balancer');
    await visible(page.getByRole('button', { name: 'Roll back to v1' }));
    await screenshots(page, '09b-request-last-result');
    await open('/');
    await hasText(page.getByRole('row', { name: /web/ }), 'v4');
    await hasText(page.getByRole('row', { name: /web/ }), 'canceled');
    await hasText(page.getByRole('row', { name: /web/ }), '2 of 2 wanted healthy');
    await open('/requests/web');
    await banner.getByRole('button', { name: 'Dismiss' }).click();
    await banner.waitFor({ state: 'detached' });
    await open('/requests/web');
    await page.getByText('No deploy in progress').waitFor();
    expect(await banner.count()).toBe(0);
  });

  it('a new request starts with no id; an existing id shows what changes and asks to confirm an update', async () => {
    await open('/');
    await page.getByRole('button', { name: 'New request' }).click();
    const dialog = page.getByRole('dialog');
    const json = dialog.getByLabel('Request JSON');
    expect(JSON.parse(await json.inputValue())).toMatchObject({ id: '' });
    await dialog.getByRole('button', { name: 'Create' }).click();
    await hasText(dialog.getByRole('alert'), 'id: required');
    await json.fill(JSON.stringify({ id: 'web', requestType: 'SERVICE', instances: 4 }));
    await hasText(dialog.getByRole('alert').first(), 'web exists');
    const changes = dialog.getByRole('list', { name: 'Changes to the request' });
    await hasText(changes, 'instances 2 → 4');
    await hasText(changes, 'loadBalanced');
    await visible(dialog.getByRole('button', { name: 'Update web' }));
    await screenshots(page, '09c-new-request-existing-id');
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    expect((await client.getRequest('web')).request.instances).toBe(2);
  });

  it('shows the traffic split and per-version rates during a canary, and a new deploy starts from the active one with the next free id', async () => {
    await open('/requests/web/deploy');
    const editor = page.getByLabel('Deploy JSON');
    await until(async () => (await editor.inputValue()).includes('"id": "v5"'), 'the next free id (v3 and v4 are used up)', WAIT);
    await page.getByText('Valid. The plan below').waitFor();
    await client.createDeploy(deploy('web', 'v5', MANUAL_CANARY));
    await open('/requests/web/deploys/v5');
    await page.getByText('Waiting for approval').waitFor();
    const actions = page.getByRole('group', { name: /Actions on deploy v5/ });
    await visible(actions.getByRole('button', { name: 'Advance' }));
    await visible(actions.getByRole('button', { name: 'Update target' }));
    const traffic = page.locator('section.traffic');
    await visible(traffic.getByRole('img', { name: /Traffic split: v2 \d+ % \/ v5 \d+ %/ }));
    await visible(traffic.getByRole('table', { name: /Traffic per version/ }).getByRole('row', { name: /v5 \(new\)/ }));
    await screenshots(page, '09d-canary-traffic-split');
    await actions.getByRole('button', { name: 'Cancel deploy' }).click();
    const dialog = page.getByRole('dialog');
    await visible(dialog.getByRole('button', { name: 'Keep deploying' }));
    await screenshots(page, '09e-cancel-plain-words');
    await confirm('Cancel deploy v5');
    await page.getByRole('heading', { name: /Result:\s*canceled/i }).waitFor();
    expect(await actions.count()).toBe(0);

    // each successful deploy in the history can be rolled back to, by name
    await open('/requests/web/deploys');
    const v1 = page.getByRole('row', { name: /^v1\b/ });
    await v1.getByRole('button', { name: 'Roll back to this' }).click();
    await visible(page.getByRole('dialog').getByRole('button', { name: 'Roll back to v1' }));
    await screenshots(page, '09f-history-roll-back-to-this');
    await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
    expect(await page.getByRole('row', { name: /^v2\b/ }).getByText('active').count()).toBe(1);
  });

  it('shows an API error in the action dialog', async () => {
    await open('/requests/web');
    await page.getByRole('button', { name: 'Scale' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByLabel('Instances').fill('2'); // no change: a 400
    await dialog.getByRole('button', { name: 'Scale' }).click();
    await hasText(dialog.getByRole('alert'), '400');
    await screenshots(page, '10-action-error');
    await dialog.getByRole('button', { name: 'Cancel' }).click();
  });

  it("tails a task's log as new lines are written", async () => {
    const ticker = `${NODE} -e ${q("let i=0;setInterval(()=>{i++;console.log('tick '+i);if(i%4===0)console.error('warn '+i)},250)")}`;
    await client.createRequest({ id: 'ticker', requestType: 'WORKER', instances: 1 });
    await client.createDeploy({ deploy: { requestId: 'ticker', id: 't1', command: ticker, considerHealthyAfterRunningForSeconds: 1 } });
    const task = await until(
      async () => (await client.requestTasks('ticker')).find((t) => t.state === 'TASK_RUNNING'),
      'the ticker task to run',
    );
    await open('/requests/ticker');
    await page.getByRole('link', { name: task.taskId.id }).click();
    await page.waitForURL(`**/tasks/${encodeURIComponent(task.taskId.id)}`);
    const log = page.getByLabel('stdout of the task');
    await hasText(log, 'tick 1');
    const lastTick = async () => Math.max(0, ...[...((await log.textContent()) ?? '').matchAll(/tick (\d+)/g)].map((m) => Number(m[1])));
    const first = await lastTick();
    await until(async () => (await lastTick()) >= first + 4, 'four more lines in the tail', WAIT);
    await visible(page.getByRole('heading', { name: /State history/ }));
    await screenshots(page, '11-task-log-tail');
    await page.getByRole('tab', { name: 'stderr' }).click();
    await hasText(page.getByLabel('stderr of the task'), 'warn 4');
  });

  it("shows a task's latest health check, its age kept current, and its failures in a row", async () => {
    const task = await until(
      async () => (await client.requestTasks('web')).find((t) => t.state === 'TASK_RUNNING' && t.health.lastCheckAt !== undefined),
      'a web task checked while running',
    );
    await open(`/tasks/${encodeURIComponent(task.taskId.id)}`);
    const age = page.getByTestId('check-age');
    await until(async () => /\((just now|\d+ s ago)\)/.test((await age.textContent()) ?? ''), 'the age of the latest check');
    await hasText(page.getByTestId('check-failures'), '0 failed in a row');
    await screenshots(page, '18-task-checks');
  });

  it("shows a job's runs (state, exit code, duration, logs), its next run, and runs it with Run now", async () => {
    await client.createRequest({ id: 'job', requestType: 'ON_DEMAND', instances: 1 } as never);
    await client.createDeploy({ deploy: { requestId: 'job', id: 'j1', command: `sh -c ${q('echo ran "$@"; exit 3')} job` } });
    await client.createRequest({
      id: 'nightly',
      requestType: 'SCHEDULED',
      schedule: '0 3 * * *',
      scheduleTimeZone: 'Europe/Berlin',
    } as never);
    await open('/requests/nightly');
    await hasText(page.locator('main'), '0 3 * * * (Europe/Berlin)');
    await visible(page.getByText('Next run'));

    await open('/requests/job');
    await page.getByRole('button', { name: 'Run now' }).click();
    await page.getByLabel('Arguments, one per line (optional)').fill('--verbose');
    await confirm('Run now');
    const runs = page.getByRole('table', { name: 'Runs' });
    await hasText(runs, 'failed');
    const row = runs.getByRole('row').nth(1);
    await hasText(row, '3');
    await hasText(row, ' s');
    await screenshots(page, '19-job-runs');
    for (const size of [1280, 390]) {
      await page.setViewportSize({ width: size, height: 900 });
      await visible(runs.getByRole('link', { name: 'logs' }).first());
    }
    await page.setViewportSize({ width: 1280, height: 900 });
    await runs.getByRole('link', { name: 'logs' }).first().click();
    await hasText(page.getByLabel('stdout of the task'), 'ran --verbose');
  });

  it('asks for a token when it has none, says when one is refused, and shows who acts', async () => {
    const context = await browser!.newContext({ viewport: { width: 1280, height: 900 } });
    try {
      const p = await context.newPage();
      p.setDefaultTimeout(WAIT);
      await p.goto(new URL('/requests/web', server!.url).toString());
      await p.getByRole('heading', { name: 'Sign in with a token' }).waitFor();
      expect(await p.locator('.identity').count()).toBe(0);
      await screenshots(p, '16-token-prompt');
      await p.getByLabel('Token', { exact: true }).fill(`fl_${'x'.repeat(43)}`);
      await p.getByRole('button', { name: 'Sign in' }).click();
      await p.getByText('The token was not accepted').waitFor();

      // A read token: it sees everything, secrets as ***, and cannot act.
      const viewer = await client.createToken('viewer', 'read');
      await p.getByLabel('Token', { exact: true }).fill(viewer.token);
      await p.getByRole('button', { name: 'Sign in' }).click();
      await p.locator('main h1', { hasText: 'web' }).waitFor();
      await hasText(p.locator('.identity'), 'viewer');
      await hasText(p.locator('.identity'), 'read');
      const scale = p.getByRole('button', { name: 'Scale' });
      await visible(scale);
      expect(await scale.isDisabled()).toBe(true);
      expect(await scale.getAttribute('title')).toMatch(/Needs a deploy token/);
      await screenshots(p, '17-read-token');

      await p.getByRole('button', { name: 'Sign out' }).click();
      await p.getByRole('heading', { name: 'Sign in with a token' }).waitFor();
      expect(await p.evaluate(() => localStorage.getItem('fledge.token'))).toBeNull();
    } finally {
      await context.close();
    }
  });

  it('takes /?token= once, drops it from the address bar, and never puts it in a URL again', async () => {
    const context = await browser!.newContext({ viewport: { width: 1280, height: 900 } });
    try {
      const token = server!.adminToken ?? '';
      const first = await context.newPage();
      first.setDefaultTimeout(WAIT);
      await first.goto(`${server!.url}/requests/web?token=${encodeURIComponent(token)}`);
      await first.locator('.identity-name', { hasText: 'admin' }).waitFor();
      expect(new URL(first.url()).pathname).toBe('/requests/web');
      expect(first.url()).not.toContain('token');
      expect(await first.evaluate(() => history.state as unknown)).toBeNull();

      // Another tab of the same browser: signed in, and the token only ever in a header.
      const second = await context.newPage();
      second.setDefaultTimeout(WAIT);
      const seen: { url: string; auth: string | undefined }[] = [];
      second.on('request', (r) => seen.push({ url: r.url(), auth: r.headers().authorization }));
      await second.goto(`${server!.url}/requests/web`);
      await second.locator('.identity-name', { hasText: 'admin' }).waitFor();
      await second.getByText('Live').waitFor();
      expect(seen.length).toBeGreaterThan(0);
      expect(seen.every((r) => !r.url.includes(token))).toBe(true);
      expect(seen.find((r) => new URL(r.url).pathname === '/api/events')?.auth).toBe(`Bearer ${token}`);
    } finally {
      await context.close();
    }
  });

  it('deep links survive a reload; keyboard use; a deleted request and a stopped server say so', async () => {
    await open('/requests/web/deploys/v2');
    await page.reload();
    await page.getByRole('heading', { name: /Result:\s*succeeded/i }).waitFor();

    await open('/?q=tick');
    await until(async () => (await page.getByRole('row').count()) === 2, 'only the ticker row (and the header)');
    await screenshots(page, '12-requests-filtered');
    await open('/');
    await screenshots(page, '13-requests');
    // keyboard: the skip link comes first; a dialog opens with Enter and closes with Escape
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Skip to content');
    await page.getByRole('button', { name: 'New request' }).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('dialog').waitFor();
    expect(await page.evaluate(() => document.activeElement?.tagName)).toBe('TEXTAREA');
    await page.keyboard.press('Escape');
    await page.getByRole('dialog').waitFor({ state: 'hidden' });

    await open('/requests/ticker');
    await page.getByRole('button', { name: 'Delete' }).click();
    await confirm('Delete request');
    await page.waitForURL((url) => url.pathname === '/');
    await open('/requests/ticker');
    await page.getByText('Request ticker not found').waitFor();
    await screenshots(page, '14-request-deleted');

    for (const r of await client.listRequests()) await client.deleteRequest(r.request.id);
    const s = server!;
    await until(async () => (await s.store.listTasks({ live: true })).length === 0, 'every task to end', WAIT);
    await open('/');
    await s.close();
    server = undefined;
    await page.getByText('Fledge is not reachable').first().waitFor();
    await screenshots(page, '15-server-down');
  });
});
