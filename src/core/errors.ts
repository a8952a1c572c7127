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
