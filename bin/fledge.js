#!/usr/bin/env node
// Runs the compiled JavaScript in dist/js (built by `npm ci` / `npm run build`), which starts
// about as fast as node itself. In a checkout whose sources changed since that build, it runs
// the TypeScript sources through tsx instead, so stale code never runs (FLEDGE_FROM_SOURCES=1
// forces that).
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function buildInfo() {
  try {
    return JSON.parse(readFileSync(join(root, 'dist', 'js', 'build-info.json'), 'utf8'));
  } catch {
    return {};
  }
}

/**
 * Any of the sources the build listed (src/prepare.mjs: every file but tests and the UI's, and
 * every directory, whose mtime moves when a file is added or removed) changed after `since`.
 */
function listedChangedSince(dir, sources, since) {
  for (const rel of sources) {
    const stat = statSync(join(dir, rel), { throwIfNoEntry: false });
    if (stat === undefined || stat.mtimeMs > since) return true;
  }
  return false;
}

/** Any server/CLI source (not the UI, not tests) changed after `since` (a build that listed none). */
function changedSince(dir, since) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'ui' && changedSince(path, since)) return true;
    } else if (!entry.name.endsWith('.test.ts') && statSync(path).mtimeMs > since) return true;
  }
  return false;
}

const { builtAt: since, sources } = buildInfo();
const src = join(root, 'src');
const stale = () => (Array.isArray(sources) ? listedChangedSince(src, sources, since) : changedSince(src, since));
const compiled = process.env.FLEDGE_FROM_SOURCES !== '1' && since !== undefined && (!existsSync(src) || !stale());
const cli = compiled ? await import('../dist/js/cli/main.js') : await loadSources();
process.exitCode = await cli.main();

async function loadSources() {
  const { register } = await import('tsx/esm/api');
  register();
  return import('../src/cli/main.ts');
}
