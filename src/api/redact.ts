// What a `read` token sees of secrets: deploy environments are shown with their names but
// without their values, wherever they appear in an answer or an event.

export const REDACTED = '***';

/** Keys whose whole value (every string inside) is secret. */
const SECRET_KEYS = new Set(['env', 'taskEnv', 'envOverrides', 'extraEnv']);

/** A copy of `value` with every string under a secret key replaced by `***`. */
export function redactSecrets(value: unknown): unknown {
  return walk(value, false);
}

function walk(value: unknown, secret: boolean): unknown {
  if (typeof value === 'string') return secret ? REDACTED : value;
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => walk(v, secret));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = walk(v, secret || SECRET_KEYS.has(k));
  return out;
}
