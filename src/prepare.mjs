// `npm ci` / `npm install` / `npm pack` run this (package.json "prepare"), and `npm run build`:
// compiles the server and CLI to dist/js (so `fledge` starts as plain JavaScript), copies the
// files they read at run time (SQL migrations), records when it built, and builds the web UI
// into dist/ui. Without dev dependencies (npm ci --omit=dev) there is no TypeScript or Vite:
// say so and go on, since bin/fledge.js then runs the sources through tsx.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../', import.meta.url));
const require = createRequire(import.meta.url);

function binOf(pkg, file) {
  try {
    return join(dirname(require.resolve(`${pkg}/package.json`)), file);
  } catch {
    return undefined;
  }
}

function run(what, args) {
  const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) {
    console.error(`fledge: ${what} failed`);
    process.exit(result.status ?? 1);
  }
}

/** Non-TypeScript files the compiled code reads next to itself. */
function copyAssets(from, to) {
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    if (entry.name === 'ui') continue;
    const src = join(from, entry.name);
    if (entry.isDirectory()) copyAssets(src, join(to, entry.name));
    else if (entry.name.endsWith('.sql')) {
      mkdirSync(to, { recursive: true });
      cpSync(src, join(to, entry.name));
    }
  }
}

/**
 * The sources bin/fledge.js checks against the build (relative to src/): every directory (a
 * file added or removed changes its mtime) and every file but tests and the UI's. Listing
 * them here spares each `fledge` start a walk of the tree (~15 ms of ~100).
 */
function sourcesOf(dir, rel = '') {
  const out = [rel === '' ? '.' : rel];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = rel === '' ? entry.name : `${rel}/${entry.name}`;
    if (entry.isDirectory()) {
      if (entry.name !== 'ui') out.push(...sourcesOf(join(dir, entry.name), path));
    } else if (!entry.name.endsWith('.test.ts')) out.push(path);
  }
  return out;
}

const only = process.argv[2]; // 'server' | 'ui' | undefined (both)
const tsc = binOf('typescript', 'bin/tsc');
const vite = binOf('vite', 'bin/vite.js');

if (only !== 'ui') {
  if (!tsc) {
    console.warn('fledge: typescript is not installed (dev dependencies omitted?): bin/fledge.js runs the sources through tsx.');
  } else {
    const out = join(root, 'dist', 'js');
    rmSync(out, { recursive: true, force: true });
    const started = Date.now();
    run('compiling the server (tsc -p tsconfig.build.json)', [tsc, '-p', 'tsconfig.build.json']);
    copyAssets(join(root, 'src'), out);
    // bin/fledge.js compares source mtimes with this, so a changed checkout never runs stale code.
    const sources = sourcesOf(join(root, 'src'));
    writeFileSync(join(out, 'build-info.json'), `${JSON.stringify({ builtAt: started, sources }, null, 2)}\n`);
    console.log(`fledge: compiled ${relative(root, out)} in ${Date.now() - started} ms`);
  }
}

if (only !== 'server') {
  if (!vite) {
    console.warn(
      'fledge: vite is not installed (dev dependencies omitted?): the web UI is not built; run `npm run build:ui` after installing them.',
    );
  } else {
    run('building the web UI', [vite, 'build', '--config', 'src/ui/vite.config.ts']);
  }
}
