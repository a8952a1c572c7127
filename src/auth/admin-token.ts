// <data-dir>/admin.token: the admin token Fledge makes at its first start, so a new user has
// nothing to configure (the CLI reads it from the same place). Only its owner may read it.
import { closeSync, constants, fstatSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { StoreConflictError, type Store, type TokenRecord } from '../store/types.ts';
import { generateToken, hashToken, isTokenShaped, newTokenId } from './tokens.ts';

export const ADMIN_TOKEN_FILE = 'admin.token';

export function adminTokenPath(dataDir: string): string {
  return join(dataDir, ADMIN_TOKEN_FILE);
}

export interface AdminToken {
  token: string;
  file: string;
  /** the token's name in the store */
  name: string;
  /** the file was written by this start */
  created: boolean;
}

/**
 * Reads the admin token file, or writes a new one (0600, never over an existing file), and
 * makes sure the store knows its hash: several schedulers may share one store, each with its
 * own file, so a token the store does not know is added rather than refused.
 */
export async function ensureAdminToken(dataDir: string, store: Store, now: number): Promise<AdminToken> {
  const file = adminTokenPath(dataDir);
  let token = readAdminTokenFile(file);
  let created = false;
  if (token === undefined) {
    token = generateToken();
    created = writeNewTokenFile(file, token);
    // Lost a race with another writer: theirs is the file's token.
    if (!created) token = readAdminTokenFile(file) as string;
  }
  const hash = hashToken(token);
  const known = await store.findTokenByHash(hash);
  if (known) return { token, file, name: known.name, created };
  // `admin`, or `admin-<hash prefix>` when another scheduler's file token has that name.
  for (const name of ['admin', `admin-${hash.slice(0, 8)}`]) {
    const record: TokenRecord = { id: newTokenId(), name, role: 'admin', hash, createdAt: now };
    try {
      await store.createToken(record);
      return { token, file, name, created };
    } catch (err) {
      if (!(err instanceof StoreConflictError)) throw err;
      const raced = await store.findTokenByHash(hash);
      if (raced) return { token, file, name: raced.name, created };
    }
  }
  throw new Error(`Cannot record the admin token of ${file}: the names admin and admin-${hash.slice(0, 8)} are taken`);
}

/**
 * The token in `file`, or undefined when there is no file. Refuses (throws) a file that is
 * not a regular file of this user readable by it alone, or that does not hold a token: anyone
 * who could write it could make themselves admin.
 */
export function readAdminTokenFile(file: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw new Error(`${file} is a symbolic link; Fledge only reads a regular file there`);
    throw err;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error(`${file} is not a regular file`);
    if (typeof process.getuid === 'function' && st.uid !== process.getuid()) {
      throw new Error(`${file} belongs to uid ${st.uid}, not to the user running Fledge (uid ${process.getuid()})`);
    }
    if ((st.mode & 0o077) !== 0) {
      throw new Error(
        `${file} can be read or written by other users (mode ${(st.mode & 0o777).toString(8)}); ` +
          `run chmod 600 ${file} if you trust its content, or delete it and restart Fledge to make a new token`,
      );
    }
    const text = readFileSync(fd, 'utf8').trim();
    if (!isTokenShaped(text)) throw new Error(`${file} does not hold a Fledge token (fl_ followed by 43 characters)`);
    return text;
  } finally {
    closeSync(fd);
  }
}

/** Creates `file` 0600 with `token`; false when it exists already. */
function writeNewTokenFile(file: string, token: string): boolean {
  let fd: number;
  try {
    fd = openSync(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    writeSync(fd, `${token}\n`);
  } finally {
    closeSync(fd);
  }
  return true;
}
