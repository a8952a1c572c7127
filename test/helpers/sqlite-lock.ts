// Holds the write lock of a SQLite file from another process (a node child with better-sqlite3
// running BEGIN IMMEDIATE), as a backup tool or a `sqlite3` shell would, until released.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { trackProcessGroup } from './fledge-process.ts';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface HeldLock {
  /** COMMIT and exit; resolves once the child is gone */
  release(): Promise<void>;
}

const SCRIPT = `
const Database = require('better-sqlite3');
const db = new Database(process.argv[1]);
db.pragma('busy_timeout = 5000');
db.exec('BEGIN IMMEDIATE');
process.stdout.write('locked\\n');
const done = () => { try { db.exec('COMMIT'); } finally { process.exit(0); } };
process.stdin.on('data', done);
process.stdin.on('end', done);
setTimeout(done, Number(process.argv[2]));
`;

/** Take the file's write lock in another process; it lets go after `maxMs` at the latest. */
export async function holdSqliteWriteLock(file: string, maxMs = 60_000): Promise<HeldLock> {
  const child = spawn(process.execPath, ['-e', SCRIPT, file, String(maxMs)], {
    cwd: REPO_ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
  });
  if (child.pid === undefined) throw new Error('could not spawn the lock holder');
  trackProcessGroup(child.pid, 'sqlite lock holder');
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (c: Buffer) => {
      if (c.toString().includes('locked')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`the lock holder exited (${code}) before it held the lock: ${err}`)));
  });
  return {
    async release() {
      child.stdin.end('release\n');
      await exited;
    },
  };
}
