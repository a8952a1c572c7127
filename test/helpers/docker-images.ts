// The image the Docker tests run, built locally (nothing can be pulled here): a root
// filesystem holding this machine's `node` binary and the shared libraries `ldd` names for it,
// dash as /bin/sh with a few coreutils for shell commands, and under /app the repository's
// examples/http-service.mjs (the image's CMD) and test fixtures, at their repository paths. The tarball is cached in the temp dir under a
// hash of its inputs, so test files (and runs) share one build; each daemon imports it once.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  createReadStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { DockerClient } from '../../src/runtimes/docker/client.ts';
import { REPO_ROOT } from './fledge-process.ts';

const BUILDER_VERSION = '1';
const BINARIES = [process.execPath, '/bin/dash', '/usr/bin/env', '/usr/bin/cat', '/usr/bin/sleep', '/usr/bin/mkfifo', '/usr/bin/true'];
/** files of this repository copied to /app/<same path>: the example service and test fixtures */
const APP_FILES = ['examples/http-service.mjs', 'test/e2e/fixtures/fail-instance-service.mjs', 'test/fixtures/docker/eat-memory.mjs'];
/** where the example service is in the image (its CMD) */
export const IMAGE_SERVICE = '/app/examples/http-service.mjs';
const CACHE_DIR = path.join(tmpdir(), 'fledge-test-images');
export const TEST_IMAGE_REPO = 'fledge-test/node';

export interface TestImage {
  /** `repo:tag` to put in a deploy's containerInfo.docker.image */
  ref: string;
  tar: string;
}

let built: TestImage | undefined;

/** Files the image holds: path in the image → path on this machine. */
function imageFiles(): Map<string, string> {
  const files = new Map<string, string>();
  for (const bin of BINARIES) {
    const real = bin === '/bin/dash' ? '/bin/sh' : bin === process.execPath ? '/usr/bin/node' : bin;
    files.set(real, bin);
    const ldd = execFileSync('ldd', [bin], { encoding: 'utf8' });
    for (const m of ldd.matchAll(/(\/\S+)\s+\(0x/g)) files.set(m[1] as string, m[1] as string);
  }
  for (const file of APP_FILES) files.set(`/app/${file}`, path.join(REPO_ROOT, file));
  return files;
}

function cacheKey(files: Map<string, string>): string {
  const hash = createHash('sha256').update(BUILDER_VERSION);
  for (const [target, source] of [...files].sort(([a], [b]) => a.localeCompare(b))) {
    const st = statSync(source);
    hash.update(`${target}\0${source}\0${st.size}\0${st.mtimeMs}\0`);
    if (target.startsWith('/app/')) hash.update(readFileSync(source));
  }
  return hash.digest('hex').slice(0, 16);
}

/** The cached tarball (built on first use). */
export function buildTestImage(): TestImage {
  if (built) return built;
  const files = imageFiles();
  const key = cacheKey(files);
  mkdirSync(CACHE_DIR, { recursive: true });
  const tar = path.join(CACHE_DIR, `node-${key}.tar`);
  if (!existsSync(tar)) {
    const stage = mkdtempSync(path.join(tmpdir(), 'fledge-image-'));
    try {
      for (const [target, source] of files) {
        const dest = path.join(stage, target);
        mkdirSync(path.dirname(dest), { recursive: true });
        copyFileSync(source, dest);
        chmodSync(dest, statSync(source).mode & 0o7777);
      }
      mkdirSync(path.join(stage, 'tmp'), { recursive: true });
      chmodSync(path.join(stage, 'tmp'), 0o1777);
      for (const dir of ['proc', 'sys', 'dev', 'etc']) mkdirSync(path.join(stage, dir), { recursive: true });
      // Another test file may build the same key at once: write aside, rename into place.
      const partial = `${tar}.${process.pid}.partial`;
      execFileSync('tar', ['-C', stage, '--owner=0', '--group=0', '-cf', partial, '.']);
      renameSync(partial, tar);
    } finally {
      rmSync(stage, { recursive: true, force: true });
    }
  }
  built = { ref: `${TEST_IMAGE_REPO}:${key}`, tar };
  return built;
}

/** Import the test image into a daemon (once per daemon); resolves with its ref. */
export async function importTestImage(client: DockerClient): Promise<string> {
  const image = buildTestImage();
  if (await client.inspectImage(image.ref)) return image.ref;
  const tag = image.ref.slice(image.ref.indexOf(':') + 1);
  await client.importImage(createReadStream(image.tar), TEST_IMAGE_REPO, tag, [
    'ENV PATH=/usr/local/bin:/usr/bin:/bin',
    `CMD ["node", "${IMAGE_SERVICE}"]`,
  ]);
  if (!(await client.inspectImage(image.ref))) throw new Error(`importing ${image.ref} did not create it`);
  return image.ref;
}
