// Tokens, who-am-I and the audit log. Which role each needs is in access.ts.
import type { AuditEntry, CreatedToken, TokenView, Whoami } from './types.ts';
import type { Context, Hono } from 'hono';
import type { Authenticator } from '../auth/authenticator.ts';
import type { Clock } from '../core/clock.ts';
import { badRequest, conflict, notFound } from '../core/errors.ts';
import { StoreConflictError, type AuditQuery, type Store, type TokenRecord } from '../store/types.ts';
import { readJson } from './errors.ts';
import { identityOf } from './guard.ts';
import { parse, schemas } from './validate.ts';

export interface AuthRouteDeps {
  store: Store;
  /** undefined with --no-auth */
  authenticator: Authenticator | undefined;
  clock: Clock;
}

export const AUDIT_DEFAULT_LIMIT = 100;
export const AUDIT_MAX_LIMIT = 1000;

export function registerAuthRoutes(app: Hono, deps: AuthRouteDeps): void {
  const { store } = deps;

  app.get('/api/auth/whoami', (c) => {
    const me = identityOf(c);
    return c.json({ name: me?.name, role: me?.role, auth: deps.authenticator !== undefined } satisfies Whoami);
  });

  app.get('/api/tokens', async (c) => c.json((await store.listTokens()).map(tokenView)));

  app.post('/api/tokens', async (c) => {
    const { value } = parse(schemas.createToken, await readJson(c));
    if (!deps.authenticator) throw conflict('Fledge runs with --no-auth: tokens would not be checked; restart it with auth on first');
    try {
      const { token, record } = await deps.authenticator.create(value.name, value.role, identityOf(c)?.name);
      return c.json({ ...tokenView(record), token } satisfies CreatedToken);
    } catch (err) {
      if (err instanceof StoreConflictError)
        throw conflict(`A token called ${value.name} exists already; revoke it first or choose another name`);
      throw err;
    }
  });

  app.delete('/api/tokens/:name', async (c) => {
    const name = c.req.param('name');
    const revoked = deps.authenticator ? await deps.authenticator.revoke(name) : await store.revokeToken(name);
    if (!revoked) throw notFound(`Token ${name} not found`);
    return c.json({ name, revoked: true });
  });

  app.get('/api/audit', async (c) => c.json((await store.listAudit(auditQuery(c))) satisfies AuditEntry[]));
}

function tokenView(t: TokenRecord): TokenView {
  const { hash: _hash, ...view } = t;
  return view;
}

const AUDIT_FILTERS = ['requestId', 'deployId', 'tokenName', 'since', 'until', 'limit'] as const;

function auditQuery(c: Context): AuditQuery {
  const query = c.req.query();
  for (const key of Object.keys(query)) {
    if (!(AUDIT_FILTERS as readonly string[]).includes(key)) {
      throw badRequest(`${key}: unknown filter (filters: ${AUDIT_FILTERS.join(', ')})`, [{ field: key, rule: 'unknown field' }]);
    }
  }
  const text = (name: 'requestId' | 'deployId' | 'tokenName') => {
    const v = query[name];
    if (v === undefined) return {};
    if (v === '' || v.length > 200) throw badRequest(`${name}: must be 1-200 characters`, [{ field: name, rule: '1-200 characters' }]);
    return { [name]: v };
  };
  const int = (name: 'since' | 'until' | 'limit', min: number, max: number) => {
    const v = query[name];
    if (v === undefined) return undefined;
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
      throw badRequest(`${name}: must be an integer from ${min} to ${max}`, [{ field: name, rule: `integer ${min}…${max}` }]);
    }
    return n;
  };
  const since = int('since', 0, Number.MAX_SAFE_INTEGER);
  const until = int('until', 0, Number.MAX_SAFE_INTEGER);
  return {
    ...text('requestId'),
    ...text('deployId'),
    ...text('tokenName'),
    ...(since !== undefined ? { since } : {}),
    ...(until !== undefined ? { until } : {}),
    limit: int('limit', 1, AUDIT_MAX_LIMIT) ?? AUDIT_DEFAULT_LIMIT,
  };
}
