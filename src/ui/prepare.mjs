// `npm ci` / `npm install` run this (package.json "prepare"): build the web UI into dist/ui.
// Without dev dependencies (npm ci --omit=dev) there is no Vite: say so and go on, since the
// server runs without the UI (and `/` then explains how to build it). Real build errors fail.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
let viteBin;
try {
  viteBin = join(dirname(createRequire(import.meta.url).resolve('vite/package.json')), 'bin', 'vite.js');
} catch {
  console.warn(
    'fledge: vite is not installed (dev dependencies omitted?): the web UI is not built; run `npm run build:ui` after installing them.',
  );
  process.exit(0);
}
const result = spawnSync(process.execPath, [viteBin, 'build', '--config', 'src/ui/vite.config.ts'], { cwd: root, stdio: 'inherit' });
process.exit(result.status ?? 1);
