import { balancerContract, type BalancerContractDriver } from '../contract.case.ts';
import { request, startUpstream, waitFor, type TestUpstream } from '../test-support.ts';
import { createBuiltinBalancer } from './index.ts';

balancerContract('builtin', async (): Promise<BalancerContractDriver> => {
  const balancer = await createBuiltinBalancer({ port: 0, drainTimeoutMs: 10_000 });
  const servers = new Map<string, TestUpstream>();
  return {
    balancer,
    async upstream(taskId) {
      const server = await startUpstream(taskId);
      servers.set(taskId, server);
      return server.upstream(taskId);
    },
    // A request held in flight by the upstream keeps its removal draining.
    async holdRemoval(_operationId, service, upstream) {
      const server = servers.get(upstream.taskId);
      if (!server) throw new Error(`no server for ${upstream.taskId}`);
      const before = server.held();
      const response = request(balancer.address().port, `${service.basePath}/slow`, { timeoutMs: 10_000 });
      await waitFor(() => server.held() > before, `a request held by ${upstream.taskId}`);
      return async () => {
        server.release();
        await response;
      };
    },
    async close() {
      await balancer.close();
      await Promise.all([...servers.values()].map((s) => s.close()));
    },
  };
});
