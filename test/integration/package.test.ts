// What `npm pack` ships runs on its own: the compiled CLI and server (dist/js), the SQL
// migrations they read, the web UI and bin/fledge.js — with no TypeScript sources and no tsx.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FledgeClient } from '../../src/api/client.ts';
import { REPO_ROOT, tempDataDir } from '../helpers/fledge-process.ts';
import { freePort } from '../helpers/ports.ts';
import { waitFor } from '../helpers/wait-for.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'fledge-pack-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the npm package', () => {
  it('holds the compiled code, migrations and UI, and runs without the sources', async () => {
    const packed = JSON.parse(
      execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], { cwd: REPO_ROOT, encoding: 'utf8' }),
    ) as {
      filename: string;
      files: { path: string }[];
    }[];
    const files = packed[0]!.files.map((f) => f.path);
    expect(files).toContain('bin/fledge.js');
    expect(files).toContain('dist/js/cli/main.js');
    expect(files).toContain('dist/js/server.js');
    expect(files).toContain('dist/js/build-info.json');
    expect(files).toContain('dist/ui/index.html');
    expect(files.some((f) => /^dist\/js\/store\/sqlite\/migrations\/0001_.*\.sql$/.test(f))).toBe(true);
    expect(files.some((f) => /^dist\/js\/store\/sqlite\/migrations\/0002_.*\.sql$/.test(f))).toBe(true);
    expect(files.filter((f) => f.startsWith('src/'))).toEqual([]);

    execFileSync('tar', ['-xzf', path.join(dir, packed[0]!.filename), '-C', dir]);
    const pkg = path.join(dir, 'package');
    // the dependencies as `npm install` would place them (this checkout's, already built)
    symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(pkg, 'node_modules'));
    const bin = path.join(pkg, 'bin', 'fledge.js');

    const help = spawnSync(process.execPath, [bin, '--help'], { cwd: dir, encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('Usage: fledge');

    const dataDir = tempDataDir();
    const port = await freePort();
    const lbPort = await freePort();
    const serve = spawnSync(
      'sh',
      [
        '-c',
        `exec "${process.execPath}" "${bin}" serve --data-dir "${dataDir}" --port ${port} --lb-port ${lbPort} >/dev/null 2>&1 & echo $!`,
      ],
      { cwd: dir, encoding: 'utf8' },
    );
    const pid = Number(serve.stdout.trim());
    try {
      const client = new FledgeClient(`http://127.0.0.1:${port}`);
      await waitFor(() => client.health().then(() => true), { timeoutMs: 20_000, intervalMs: 50, message: 'the packed fledge to serve' });
      // the compiled server found its migrations (tokens are in the second) and its UI
      const token = readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();
      expect(await new FledgeClient(`http://127.0.0.1:${port}`, { token }).listRequests()).toEqual([]);
      const ui = await fetch(`http://127.0.0.1:${port}/`);
      expect(ui.status).toBe(200);
      expect(await ui.text()).toContain('<!doctype html>');
      const cmdline = execFileSync('cat', [`/proc/${pid}/cmdline`], { encoding: 'utf8' });
      expect(cmdline).toContain(path.join('package', 'bin', 'fledge.js'));
    } finally {
      process.kill(pid, 'SIGKILL');
    }
  });
});
