import { balancerContract, proxyBalancerContract, type BalancerContractDriver } from '../contract.case.ts';
import { proxyContractDriver, testClock } from '../test-support.ts';
import { createBuiltinBalancer } from './index.ts';

balancerContract('builtin', async (): Promise<BalancerContractDriver> => {
  const clock = testClock();
  return proxyContractDriver(
    await createBuiltinBalancer({ port: 0, drainTimeoutMs: 10_000, now: clock.now, ejectAfterFailures: 0 }),
    clock,
  );
});

proxyBalancerContract('builtin', (o) =>
  createBuiltinBalancer({
    port: 0,
    drainTimeoutMs: 10_000,
    ejectAfterFailures: o.ejectAfterFailures,
    ejectBaseMs: o.ejectBaseMs,
    upstreamTimeoutMs: o.upstreamTimeoutMs,
  }),
);
