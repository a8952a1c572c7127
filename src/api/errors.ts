// Every error becomes JSON { message, details } with the right status, here and only here.
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { FledgeError, badRequest } from '../core/errors.ts';
import type { Logger } from '../logger.ts';
import { requestBody } from './guard.ts';
import { ForeignTaskError } from '../runtimes/types.ts';
import { StoreUnavailableError } from '../store/types.ts';

/** seconds a client should wait before trying again while the store is away */
const RETRY_AFTER_SECONDS = 2;

/** The body as JSON (the guard has read it, within the size limit); a 400 when it is not. */
export async function readJson(c: Context): Promise<unknown> {
  const text = requestBody(c);
  if (text.trim() === '') throw badRequest('Request body is empty; expected a JSON object');
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw badRequest(`Malformed JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
}

export const errorHandler =
  (logger: Logger) =>
  (err: Error, c: Context): Response => {
    if (err instanceof FledgeError) {
      return c.json({ message: err.message, details: err.details }, err.status);
    }
    if (err instanceof StoreUnavailableError) {
      // Transient: nothing was half-applied (every change set is one transaction); try again.
      c.header('Retry-After', String(RETRY_AFTER_SECONDS));
      return c.json({ message: `${err.message}; nothing was changed, try again`, details: [] }, 503);
    }
    if (err instanceof ForeignTaskError) {
      return c.json({ message: err.message, details: [] }, 409);
    }
    if (err instanceof HTTPException) {
      return c.json({ message: err.message, details: [] }, err.status);
    }
    logger.error({ err, path: c.req.path }, 'unhandled API error');
    return c.json({ message: `Internal error: ${err.message}`, details: [] }, 500);
  };
