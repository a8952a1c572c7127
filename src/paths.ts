// Where the package's own files are, whether this code runs from src/ (through tsx) or from the
// compiled dist/js/: both sit two levels under the package root.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    dir = dirname(dir);
  }
  throw new Error(`fledge: no package.json above ${fileURLToPath(import.meta.url)}`);
}

export const PACKAGE_ROOT = findRoot();
/** the web UI built by Vite */
export const UI_DIR = join(PACKAGE_ROOT, 'dist', 'ui');
