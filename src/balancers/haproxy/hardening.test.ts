// The HAProxy configuration's client-side defences against a real HAProxy: the same hostile
// clients as the builtin proxy faces (hardening.case.ts).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../../test/helpers/ports.ts';
import { hardeningSuite } from '../hardening.case.ts';
import { createHaproxyBalancer } from './index.ts';

hardeningSuite(
  'haproxy',
  async (options) => {
    const dataDir = mkdtempSync(join(tmpdir(), 'fledge-hap-hard-'));
    const lb = await createHaproxyBalancer({ dataDir, port: await freePort(), reconcileIntervalMs: 0, stopOnClose: true, ...options });
    return {
      balancer: lb,
      port: lb.address().port,
      async close() {
        await lb.shutdown();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  },
  { headerTooLarge: 400, beyondMaxConnections: 'queued', dropsConnectionNamedHeaders: false },
);
