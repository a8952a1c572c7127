// Which PostgreSQL failures are transient (the database is away or restarting): those become
// StoreUnavailableError, retried by the loop and answered 503 by the API. Everything else
// (constraint violations, bad SQL) stays what it is.
import { StoreUnavailableError } from '../types.ts';

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ENOTFOUND',
]);
const TRANSIENT_MESSAGES = [
  /Connection terminated/i,
  /connection error/i,
  /not queryable/i,
  /timeout exceeded when trying to connect/i,
  /Query read timeout/i,
  /the database system is (starting up|shutting down|in recovery mode)/i,
  /terminating connection/i,
  /Client was closed/i,
];

/** SQLSTATEs that mean "try again": connection exceptions, shutdowns, too many connections, deadlocks, timeouts. */
function transientSqlState(code: string): boolean {
  return (
    code.startsWith('08') ||
    code.startsWith('57P') ||
    code === '53300' ||
    code === '40001' ||
    code === '40P01' ||
    code === '55P03' ||
    code === '57014' ||
    code === '25P03'
  );
}

export function isTransient(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && (NETWORK_CODES.has(code) || (/^[0-9A-Z]{5}$/.test(code) && transientSqlState(code)))) return true;
  if (err instanceof AggregateError) return err.errors.some(isTransient);
  return TRANSIENT_MESSAGES.some((re) => re.test(err.message));
}

/** The error a store method throws: StoreUnavailableError for transient failures. */
export function storeError(err: unknown, what: string): unknown {
  if (err instanceof StoreUnavailableError) return err;
  if (isTransient(err)) {
    const detail = err instanceof Error ? err.message || (err as { code?: string }).code : String(err);
    return new StoreUnavailableError(`The PostgreSQL store is unavailable (${what}): ${detail}`, { cause: err });
  }
  return err;
}
