// bin/fledge.js runs the compiled dist/js unless a source changed since that build, and then
// the TypeScript sources: checked against the sources the build listed (src/prepare.mjs), in a
// copy of the layout whose two entry points only say which one ran.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FLEDGE_BIN, REPO_ROOT } from '../helpers/fledge-process.ts';

let root: string;
const BUILT = Date.now() - 60_000;
const at = (file: string, ms: number) => utimesSync(file, ms / 1000, ms / 1000);

function write(rel: string, text: string, mtime = BUILT - 60_000): void {
  const file = path.join(root, rel);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, text);
  at(file, mtime);
}

function buildInfo(info: object): void {
  write('dist/js/build-info.json', JSON.stringify(info));
}

/** Which entry point ran. */
function ran(env: Record<string, string> = {}): string {
  const res = spawnSync(process.execPath, [path.join(root, 'bin', 'fledge.js')], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '', ...env },
    timeout: 30_000,
  });
  expect(res.status, res.stderr).toBe(0);
  return res.stdout.trim();
}

beforeEach(() => {
  root = mkdtempSync(path.join(tmpdir(), 'fledge-bin-'));
  mkdirSync(path.join(root, 'bin'));
  copyFileSync(FLEDGE_BIN, path.join(root, 'bin', 'fledge.js'));
  symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(root, 'node_modules'));
  writeFileSync(path.join(root, 'package.json'), '{"type":"module"}');
  write('dist/js/cli/main.js', "export async function main() { console.log('compiled'); return 0; }\n");
  write('src/cli/main.ts', "export async function main(): Promise<number> { console.log('sources'); return 0; }\n");
  write('src/cli/main.test.ts', '// a test\n');
  // directories last: writing into them moved their mtimes
  at(path.join(root, 'src', 'cli'), BUILT - 60_000);
  at(path.join(root, 'src'), BUILT - 60_000);
  buildInfo({ builtAt: BUILT, sources: ['.', 'cli', 'cli/main.ts'] });
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe('bin/fledge.js', () => {
  it('runs the build when no listed source changed since it, and the sources when told to', () => {
    expect(ran()).toBe('compiled');
    expect(ran({ FLEDGE_FROM_SOURCES: '1' })).toBe('sources');
  });

  it('runs the sources once a source file changed after the build', () => {
    at(path.join(root, 'src', 'cli', 'main.ts'), Date.now());
    expect(ran()).toBe('sources');
  });

  it('runs the sources once a file was added or removed (its directory changed)', () => {
    writeFileSync(path.join(root, 'src', 'cli', 'new.ts'), 'export {};\n');
    expect(ran()).toBe('sources');
    unlinkSync(path.join(root, 'src', 'cli', 'new.ts'));
    at(path.join(root, 'src', 'cli'), BUILT - 1000);
    expect(ran()).toBe('compiled');
    unlinkSync(path.join(root, 'src', 'cli', 'main.test.ts'));
    expect(ran()).toBe('sources');
  });

  it('ignores a test edited in place, and runs the sources when a listed source is gone', () => {
    write('src/cli/main.test.ts', '// edited\n', Date.now());
    at(path.join(root, 'src', 'cli'), BUILT - 1000);
    expect(ran()).toBe('compiled');
    buildInfo({ builtAt: BUILT, sources: ['.', 'cli', 'cli/main.ts', 'cli/gone.ts'] });
    expect(ran()).toBe('sources');
  });

  it('walks the tree for a build that listed no sources', () => {
    buildInfo({ builtAt: BUILT });
    expect(ran()).toBe('compiled');
    at(path.join(root, 'src', 'cli', 'main.ts'), Date.now());
    expect(ran()).toBe('sources');
  });

  it('runs the build where there are no sources (an installed package)', () => {
    rmSync(path.join(root, 'src'), { recursive: true });
    expect(ran()).toBe('compiled');
  });
});
