/** Errors the API maps to HTTP statuses in one place (api/errors.ts). */
export class FledgeError extends Error {
  constructor(
    readonly status: 400 | 404 | 409,
    message: string,
    readonly details: { field?: string; rule?: string; message?: string }[] = [],
  ) {
    super(message);
  }
}

export const badRequest = (message: string, details: FledgeError['details'] = []) => new FledgeError(400, message, details);
export const notFound = (message: string) => new FledgeError(404, message);
export const conflict = (message: string) => new FledgeError(409, message);

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The `default:` of a switch over a union: a compile error when a case is missing. */
export function assertNever(value: never): never {
  throw new Error(`Unexpected value: ${JSON.stringify(value)}`);
}
