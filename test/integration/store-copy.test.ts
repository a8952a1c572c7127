// Moving state (issue 11, item 5) with the real CLI: an online backup of a running SQLite
// scheduler, `fledge store copy` SQLite → PostgreSQL, a scheduler started on the copy that
// re-adopts the running tasks, and the copy back PostgreSQL → SQLite; a non-empty target is
// refused and no password is ever printed.
import { statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStore } from '../../src/store/index.ts';
import { deployExample } from '../helpers/example-service.ts';
import { cleanup, leakedProcesses, reservePorts, startFledgeProcess, tempDataDir, trackTasks } from '../helpers/fledge-process.ts';
import { startPostgres, type TestPostgres } from '../helpers/postgres.ts';
import { runCli } from '../helpers/run-cli.ts';

const PORTS = reservePorts(20);
let pg: TestPostgres;

beforeAll(async () => {
  pg = await startPostgres();
});
afterAll(async () => {
  await cleanup();
  await pg?.destroy();
  expect(leakedProcesses()).toEqual([]);
});

describe('fledge store copy and backup', () => {
  it('backs up a running SQLite store, copies it to PostgreSQL and back, and a scheduler on the copy re-adopts the tasks', async () => {
    const dataDir = tempDataDir();
    const sqliteServer = await startFledgeProcess({ dataDir, portRange: PORTS });
    const tasks = await deployExample(sqliteServer.client, 'svc', 'v1', { instances: 2 });
    trackTasks(tasks);

    // online backup while the scheduler runs
    const backupFile = path.join(tempDataDir(), 'backup.db');
    const backup = await runCli(['store', 'backup', backupFile, '--data-dir', dataDir, '--json'], { url: sqliteServer.url });
    expect(backup.code, backup.stderr).toBe(0);
    expect(JSON.parse(backup.stdout).counts).toMatchObject({ requests: 1, deploys: 1, tasks: 2 });
    expect(statSync(backupFile).mode & 0o777).toBe(0o600);
    const again = await runCli(['store', 'backup', backupFile, '--data-dir', dataDir], { url: sqliteServer.url });
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('exists; give --force');

    // stop the SQLite scheduler (its tasks keep running), copy its state into PostgreSQL
    sqliteServer.kill('SIGTERM');
    await sqliteServer.waitExit();
    const pgUrl = await pg.createDatabase();
    const password = new URL(pgUrl).password;
    const copy = await runCli(['store', 'copy', '--from', `sqlite:${dataDir}`, '--to', pgUrl], { url: sqliteServer.url });
    expect(copy.code, copy.stderr).toBe(0);
    expect(copy.stdout).toContain('verified');
    expect(copy.stdout).toMatch(/tasks\s+2/);
    expect(copy.stdout + copy.stderr).not.toContain(password);

    // a non-empty target is refused
    const twice = await runCli(['store', 'copy', '--from', `sqlite:${dataDir}`, '--to', pgUrl], { url: sqliteServer.url });
    expect(twice.code).toBe(2);
    expect(twice.stderr).toContain('is not empty');
    expect(twice.stderr).not.toContain(password);

    // a scheduler on the copy (same machine, same data dir) re-adopts the tasks: same ids, same pids
    const pgServer = await startFledgeProcess({ dataDir, portRange: PORTS, args: ['--lb', 'none'], env: { FLEDGE_STORE: pgUrl } });
    const adopted = await pgServer.client.requestTasks('svc');
    expect(adopted.map((t) => [t.taskId.id, t.pid]).sort()).toEqual(tasks.map((t) => [t.taskId.id, t.pid]).sort());
    expect((await pgServer.client.deployHistoryEntry('svc', 'v1')).deployResult?.deployState).toBe('SUCCEEDED');
    // /health answers as soon as the API listens; leading follows once the recovery is done
    await expect.poll(async () => (await pgServer.client.state()).leader?.self, { timeout: 10_000 }).toBe(true);
    pgServer.kill('SIGTERM');
    await pgServer.waitExit();

    // and back: PostgreSQL → a new SQLite file, every table equal
    const back = path.join(tempDataDir(), 'back.db');
    const copyBack = await runCli(['store', 'copy', '--from', pgUrl, '--to', `sqlite:${back}`, '--json'], { url: sqliteServer.url });
    expect(copyBack.code, copyBack.stderr).toBe(0);
    const original = await createStore({ kind: 'sqlite', file: backupFile });
    const returned = await createStore({ kind: 'sqlite', file: back });
    try {
      expect(JSON.parse(copyBack.stdout).counts).toEqual(await original.rows.counts());
      expect(await returned.listRequests()).toEqual(await original.listRequests());
      expect(await returned.listDeployHistory('svc')).toEqual(await original.listDeployHistory('svc'));
      expect((await returned.listTasks()).map((t) => t.taskId.id)).toEqual((await original.listTasks()).map((t) => t.taskId.id));
    } finally {
      await original.close();
      await returned.close();
    }

    // PostgreSQL is backed up with pg_dump: the command says so, without the password
    const pgBackup = await runCli(['store', 'backup', path.join(tempDataDir(), 'x.dump'), '--store', pgUrl], { url: sqliteServer.url });
    expect(pgBackup.code).toBe(2);
    expect(pgBackup.stderr).toContain('pg_dump');
    expect(pgBackup.stderr).not.toContain(password);
  });

  it('refuses a source that does not exist and the same store on both sides', async () => {
    const missing = await runCli(['store', 'copy', '--from', 'sqlite:/nonexistent/fledge.db', '--to', `sqlite:${tempDataDir()}/x.db`], {
      url: 'http://127.0.0.1:1',
    });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('No SQLite store at /nonexistent/fledge.db');
    const same = await runCli(['store', 'copy', '--from', 'sqlite:/tmp/a.db', '--to', 'sqlite:/tmp/a.db'], { url: 'http://127.0.0.1:1' });
    expect(same.code).toBe(2);
    expect(same.stderr).toContain('the same store');
  });
});
