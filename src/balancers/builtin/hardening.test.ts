import { hardeningSuite } from '../hardening.case.ts';
import { createBuiltinBalancer } from './index.ts';

hardeningSuite(
  'builtin',
  async (options) => {
    const lb = await createBuiltinBalancer({ port: 0, ...options });
    return { balancer: lb, port: lb.address().port, close: () => lb.close() };
  },
  { headerTooLarge: 431, beyondMaxConnections: 'closed', dropsConnectionNamedHeaders: true },
);
