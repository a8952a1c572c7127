import { balancerContract, type BalancerContractDriver } from '../contract.case.ts';
import { proxyContractDriver } from '../test-support.ts';
import { createBuiltinBalancer } from './index.ts';

balancerContract('builtin', async (): Promise<BalancerContractDriver> =>
  proxyContractDriver(await createBuiltinBalancer({ port: 0, drainTimeoutMs: 10_000 })),
);
