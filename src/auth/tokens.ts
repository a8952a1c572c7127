// API tokens: random secrets shown once, known to the store only by their SHA-256.
import { createHash, randomBytes } from 'node:crypto';

/** Makes a token recognisable in logs, files and secret scanners. */
export const TOKEN_PREFIX = 'fl_';
/** fl_ + 32 random bytes in base64url */
const TOKEN_SHAPE = /^fl_[A-Za-z0-9_-]{43}$/;
export const TOKEN_NAME = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$/;
export const TOKEN_NAME_RULE = '1-100 characters of [A-Za-z0-9_.@-], starting with a letter or digit';

export function generateToken(): string {
  return `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export function isTokenShaped(text: string): boolean {
  return TOKEN_SHAPE.test(text);
}

export function newTokenId(): string {
  return randomBytes(6).toString('hex');
}

/** The token of an `Authorization: Bearer <token>` header; undefined for anything else. */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return match?.[1];
}
