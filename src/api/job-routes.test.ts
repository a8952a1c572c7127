import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { JOB_ROUTE_ACCESS, registerJobRoutes } from './job-routes.ts';

describe('job and webhook routes', () => {
  it('name a role for every route they register (webhooks admin only)', () => {
    const app = new Hono();
    registerJobRoutes(app, { store: {} as never, service: {} as never, clock: { now: () => 0 }, webhookAllow: () => true });
    const registered = app.routes.map((r) => `${r.method} ${r.path}`).sort();
    expect(registered).toEqual(Object.keys(JOB_ROUTE_ACCESS).sort());
    for (const [route, role] of Object.entries(JOB_ROUTE_ACCESS)) {
      if (route.includes('/api/webhooks')) expect(role, route).toBe('admin');
    }
  });
});
