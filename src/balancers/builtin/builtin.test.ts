import { balancerContract, type BalancerContractDriver } from '../contract.case.ts';
import { proxyContractDriver, testClock } from '../test-support.ts';
import { createBuiltinBalancer } from './index.ts';

balancerContract('builtin', async (): Promise<BalancerContractDriver> => {
  const clock = testClock();
  return proxyContractDriver(await createBuiltinBalancer({ port: 0, drainTimeoutMs: 10_000, now: clock.now }), clock);
});
