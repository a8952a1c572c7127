import { balancerContract, proxyBalancerContract, type BalancerContractDriver } from '../contract.case.ts';
import { proxyContractDriver } from '../test-support.ts';
import { createBuiltinBalancer } from './index.ts';

balancerContract('builtin', async (): Promise<BalancerContractDriver> =>
  proxyContractDriver(await createBuiltinBalancer({ port: 0, drainTimeoutMs: 10_000 })),
);

proxyBalancerContract('builtin', (o) =>
  createBuiltinBalancer({
    port: 0,
    drainTimeoutMs: 10_000,
    ejectAfterFailures: o.ejectAfterFailures,
    ejectBaseMs: o.ejectBaseMs,
    upstreamTimeoutMs: o.upstreamTimeoutMs,
  }),
);
