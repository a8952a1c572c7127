/*
 * The balancer contract: behaviour every implementation (builtin, fake, later haproxy) must
 * show, written against the Balancer interface plus a small driver the implementation
 * supplies for what only it knows how to do (provide upstreams, keep a removal waiting).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { settled, waitFor, type BalancerContractDriver } from './test-support.ts';
import type { Balancer, LbOperationStatus, LbService, Upstream } from './types.ts';

export type { BalancerContractDriver };

export interface BalancerContractOptions {
  /** bound on waiting for an operation to finish; default 5 s */
  settleTimeoutMs?: number;
}

export function balancerContract(
  name: string,
  makeDriver: () => Promise<BalancerContractDriver>,
  options: BalancerContractOptions = {},
): void {
  const timeoutMs = options.settleTimeoutMs ?? 5_000;

  describe(`balancer contract: ${name}`, () => {
    let driver: BalancerContractDriver | undefined;
    let seq = 0;

    afterEach(async () => {
      await driver?.close();
      driver = undefined;
    });

    async function setup() {
      driver = await makeDriver();
      seq += 1;
      const service: LbService = { serviceId: `svc${seq}`, basePath: `/svc${seq}`, groups: [] };
      return { driver, balancer: driver.balancer, service };
    }

    async function applied(balancer: Balancer, id: string, service: LbService, add: Upstream[], remove: Upstream[]) {
      await balancer.apply(id, service, add, remove);
      return settled(balancer, id, timeoutMs);
    }

    const ids = (upstreams: Upstream[]) => upstreams.map((u) => u.taskId).sort();

    it('adds upstreams: the operation succeeds and the service lists them', async () => {
      const { driver, balancer, service } = await setup();
      const a = await driver.upstream('a');
      const b = await driver.upstream('b');
      const status = await applied(balancer, 'add-1', service, [a, b], []);
      expect(status).toMatchObject({ operationId: 'add-1', state: 'SUCCESS' });
      expect(ids(await balancer.upstreams(service.serviceId))).toEqual(['a', 'b']);
    });

    it('treats adding an upstream already present as a no-op success', async () => {
      const { driver, balancer, service } = await setup();
      const a = await driver.upstream('a');
      await applied(balancer, 'add-1', service, [a], []);
      expect((await applied(balancer, 'add-2', service, [a], [])).state).toBe('SUCCESS');
      expect(ids(await balancer.upstreams(service.serviceId))).toEqual(['a']);
    });

    it('re-applying an id returns the first result and does not re-add what was removed since', async () => {
      const { driver, balancer, service } = await setup();
      const a = await driver.upstream('a');
      const b = await driver.upstream('b');
      await applied(balancer, 'add-1', service, [a, b], []);
      expect((await applied(balancer, 'remove-1', service, [], [a])).state).toBe('SUCCESS');

      const again = await balancer.apply('add-1', service, [a, b], []);
      expect(again).toMatchObject({ operationId: 'add-1', state: 'SUCCESS' });
      expect(ids(await balancer.upstreams(service.serviceId))).toEqual(['b']);
    });

    it('removing an unknown upstream succeeds', async () => {
      const { driver, balancer, service } = await setup();
      const ghost = await driver.upstream('ghost');
      expect((await applied(balancer, 'remove-ghost', service, [], [ghost])).state).toBe('SUCCESS');
      expect(await balancer.upstreams(service.serviceId)).toEqual([]);
    });

    it('knows nothing about ids it never saw', async () => {
      const { balancer } = await setup();
      expect(await balancer.state('never-applied')).toBeUndefined();
      expect(await balancer.cancel('never-applied')).toBeUndefined();
      expect(await balancer.upstreams('no-such-service')).toEqual([]);
    });

    it('keeps a removal WAITING while it is held, out of rotation, then SUCCESS', async () => {
      const { driver, balancer, service } = await setup();
      const a = await driver.upstream('a');
      await applied(balancer, 'add-1', service, [a], []);
      const release = await driver.holdRemoval('remove-1', service, a);

      expect((await balancer.apply('remove-1', service, [], [a])).state).toBe('WAITING');
      expect((await balancer.state('remove-1'))?.state).toBe('WAITING');
      expect(await balancer.upstreams(service.serviceId)).toEqual([]);

      await release();
      expect((await settled(balancer, 'remove-1', timeoutMs)).state).toBe('SUCCESS');
      expect(await balancer.upstreams(service.serviceId)).toEqual([]);
    });

    it('cancels a WAITING removal: CANCELED, and the upstream is back in rotation', async () => {
      const { driver, balancer, service } = await setup();
      const a = await driver.upstream('a');
      await applied(balancer, 'add-1', service, [a], []);
      const release = await driver.holdRemoval('remove-1', service, a);
      expect((await balancer.apply('remove-1', service, [], [a])).state).toBe('WAITING');

      expect(await balancer.cancel('remove-1')).toMatchObject({ operationId: 'remove-1', state: 'CANCELED' });
      expect(ids(await balancer.upstreams(service.serviceId))).toEqual(['a']);

      await release();
      // Canceling is final and idempotent.
      expect((await balancer.cancel('remove-1'))?.state).toBe('CANCELED');
      expect((await balancer.state('remove-1'))?.state).toBe('CANCELED');
      expect(ids(await balancer.upstreams(service.serviceId))).toEqual(['a']);
    });

    it('canceling a finished operation changes nothing', async () => {
      const { driver, balancer, service } = await setup();
      const a = await driver.upstream('a');
      await applied(balancer, 'add-1', service, [a], []);
      expect((await balancer.cancel('add-1'))?.state).toBe('SUCCESS');
      expect(ids(await balancer.upstreams(service.serviceId))).toEqual(['a']);
    });

    it('tells onChange listeners about every state change, until they unsubscribe', async () => {
      const { driver, balancer, service } = await setup();
      const seen: LbOperationStatus[] = [];
      const unsubscribe = balancer.onChange((s) => seen.push(s));
      const a = await driver.upstream('a');
      await applied(balancer, 'add-1', service, [a], []);
      await waitFor(() => seen.some((s) => s.operationId === 'add-1' && s.state === 'SUCCESS'), 'onChange for add-1', { timeoutMs });

      const release = await driver.holdRemoval('remove-1', service, a);
      await balancer.apply('remove-1', service, [], [a]);
      await release();
      await waitFor(() => seen.some((s) => s.operationId === 'remove-1' && s.state === 'SUCCESS'), 'onChange for remove-1', { timeoutMs });

      unsubscribe();
      const before = seen.length;
      await applied(balancer, 'add-2', service, [a], []);
      expect(seen.length).toBe(before);
    });

    it('fails an operation whose basePath belongs to another service, changing nothing', async () => {
      const { driver, balancer, service } = await setup();
      const a = await driver.upstream('a');
      const b = await driver.upstream('b');
      await applied(balancer, 'add-1', service, [a], []);
      const thief: LbService = { serviceId: `${service.serviceId}-other`, basePath: `${service.basePath}/`, groups: [] };
      const status = await applied(balancer, 'steal-1', thief, [b], []);
      expect(status.state).toBe('FAILED');
      expect(status.message).toMatch(/already routed/);
      expect(await balancer.upstreams(thief.serviceId)).toEqual([]);
    });
  });
}
