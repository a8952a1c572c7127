// Unpacking artifacts into a sandbox with Debian's own tools (GNU tar for tar and its
// compressions, unzip, gzip), run through /bin/sh with a file-size limit and a deadline.
//
// An archive comes from the network, so before anything is written it is listed and refused
// when a member would land outside its folder: an absolute name, a `..` segment, a device or
// fifo, a hard link out of the archive, or (zip) any symbolic link, since unzip writes through
// a link an earlier member made. GNU tar itself delays the links it creates until every file
// is written, so a tar member cannot write through one either. After unpacking, every link in
// the sandbox must point inside it (Fledge writes stdout, stderr and task.json there).
import { spawn } from 'node:child_process';
import { lstatSync, readdirSync, readlinkSync, realpathSync } from 'node:fs';
import path from 'node:path';

export type ArchiveKind = 'tar' | 'zip' | 'gz';

/** Mesos' recognised archive names (SingularityMesosArtifact's `extract`). */
export function archiveKind(fileName: string): ArchiveKind | undefined {
  const name = fileName.toLowerCase();
  if (/\.(tar|tar\.gz|tgz|tar\.bz2|tbz2|tar\.xz|txz)$/.test(name)) return 'tar';
  if (name.endsWith('.zip')) return 'zip';
  if (name.endsWith('.gz')) return 'gz';
  return undefined;
}

export class ArchiveError extends Error {}

interface RunLimits {
  /** largest file the tool may write */
  maxFileBytes: number;
  timeoutMs: number;
}

/** Runs a tool under `ulimit -f` (512-byte blocks) with a deadline; resolves with its stdout. */
function run(argv: string[], limits: RunLimits, stdoutFile?: string): Promise<string> {
  const blocks = Math.max(1, Math.ceil(limits.maxFileBytes / 512));
  const script = stdoutFile ? 'ulimit -f "$1"; shift; out="$1"; shift; exec "$@" > "$out"' : 'ulimit -f "$1"; shift; exec "$@"';
  const args = ['-c', script, 'fledge-unpack', String(blocks), ...(stdoutFile ? [stdoutFile] : []), ...argv];
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', args, { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: '/usr/bin:/bin', LC_ALL: 'C' } });
    let out = '';
    let err = '';
    const cap = 1 << 20;
    child.stdout.on('data', (b: Buffer) => (out = out.length < cap ? out + b.toString('utf8') : out));
    child.stderr.on('data', (b: Buffer) => (err = err.length < 4096 ? err + b.toString('utf8') : err));
    const timer = setTimeout(() => child.kill('SIGKILL'), limits.timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new ArchiveError(`cannot run ${argv[0]}: ${e.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return resolve(out);
      const why =
        signal === 'SIGKILL'
          ? `took longer than ${Math.round(limits.timeoutMs / 1000)} s`
          : signal === 'SIGXFSZ' || code === 153
            ? `a file in it is larger than ${limits.maxFileBytes} bytes`
            : (err.trim().split('\n').at(-1) ?? `exit ${code}`);
      reject(new ArchiveError(`${argv[0]} failed: ${why}`));
    });
  });
}

const unsafeName = (name: string) => name.startsWith('/') || name.split('/').includes('..');

/** The members of a tar archive, refused when one would leave the folder. */
async function checkTar(file: string, limits: RunLimits): Promise<void> {
  const names = (await run(['tar', '-t', '-f', file], limits)).split('\n').filter(Boolean);
  const bad = names.find(unsafeName);
  if (bad !== undefined) throw new ArchiveError(`member ${JSON.stringify(bad)} would be written outside the sandbox`);
  // Verbose lines start with the member's type: - d l h (hard link) c b p (device, fifo).
  for (const line of (await run(['tar', '-t', '-v', '-f', file], limits)).split('\n')) {
    const type = line[0];
    if (type === 'c' || type === 'b' || type === 'p') throw new ArchiveError(`member ${line.split(/\s+/).at(-1)} is a device or fifo`);
    if (type === 'h') {
      const target = line.split(' link to ').at(-1) ?? '';
      if (unsafeName(target)) throw new ArchiveError(`hard link to ${JSON.stringify(target)} leaves the archive`);
    }
  }
}

/** zipinfo's listing: a permission string, then the fields, the name last. */
async function checkZip(file: string, limits: RunLimits): Promise<void> {
  const names = (await run(['unzip', '-Z1', file], limits)).split('\n').filter(Boolean);
  const bad = names.find(unsafeName);
  if (bad !== undefined) throw new ArchiveError(`member ${JSON.stringify(bad)} would be written outside the sandbox`);
  for (const line of (await run(['unzip', '-Z', '-s', file], limits)).split('\n')) {
    if (/^l[rwx-]{9}\s/.test(line)) {
      throw new ArchiveError(`member ${line.split(/\s+/).at(-1)} is a symbolic link; zip archives with links are not unpacked`);
    }
  }
}

/** Unpacks `file` (of `kind`) into `into`; a .gz that is not a tarball becomes the file without .gz. */
export async function unpack(file: string, kind: ArchiveKind, into: string, limits: RunLimits): Promise<void> {
  switch (kind) {
    case 'tar':
      await checkTar(file, limits);
      await run(['tar', '-x', '-f', file, '-C', into, '--no-same-owner', '--no-same-permissions'], limits);
      return;
    case 'zip':
      await checkZip(file, limits);
      // -o overwrite without asking, -q quiet; -: is NOT given, so unzip keeps names inside `into`.
      await run(['unzip', '-o', '-q', file, '-d', into], limits);
      return;
    case 'gz': {
      const out = path.join(into, path.basename(file).replace(/\.gz$/i, '') || 'artifact');
      await run(['gzip', '-d', '-c', '--', file], limits, out);
      return;
    }
  }
}

/**
 * Every symbolic link under `root` must resolve inside it (or dangle inside it): Fledge writes
 * into the sandbox after the artifacts, and a link must not lead those writes elsewhere.
 * Also sums the bytes of regular files, for the caller's total bound.
 */
export function checkTree(root: string): { bytes: number } {
  const base = realpathSync(root);
  let bytes = 0;
  const stack = [base];
  while (stack.length > 0) {
    const dir = stack.pop() as string;
    for (const name of readdirSync(dir)) {
      const full = path.join(dir, name);
      const st = lstatSync(full);
      if (st.isSymbolicLink()) {
        const target = path.resolve(dir, readlinkSync(full));
        if (target !== base && !target.startsWith(`${base}${path.sep}`)) {
          throw new ArchiveError(`${path.relative(base, full)} is a link to ${target}, outside the sandbox`);
        }
      } else if (st.isDirectory()) stack.push(full);
      else if (st.isFile()) bytes += st.size;
      else throw new ArchiveError(`${path.relative(base, full)} is neither a file, a folder nor a link`);
    }
  }
  return { bytes };
}
