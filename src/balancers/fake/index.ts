export {
  createFakeBalancer,
  type FakeBalancer,
  type FakeBalancerOptions,
  type FakeBehaviour,
  type FakeOperationRecord,
} from './fake-balancer.ts';
