// Choose a balancer implementation from configuration.
import { createBuiltinBalancer, type BuiltinBalancer, type BuiltinBalancerOptions } from './builtin/index.ts';
import { createFakeBalancer, type FakeBalancer, type FakeBalancerOptions } from './fake/index.ts';
import { createHaproxyBalancer, type HaproxyBalancer, type HaproxyBalancerOptions } from './haproxy/index.ts';
import type { Balancer } from './types.ts';

export type BalancerConfig =
  | ({ kind: 'builtin' } & BuiltinBalancerOptions)
  | ({ kind: 'fake' } & FakeBalancerOptions)
  | ({ kind: 'haproxy' } & HaproxyBalancerOptions);

/** A started balancer; the builtin one resolves once it listens. */
export function createBalancer(config: { kind: 'builtin' } & BuiltinBalancerOptions): Promise<BuiltinBalancer>;
export function createBalancer(config: { kind: 'fake' } & FakeBalancerOptions): Promise<FakeBalancer>;
export function createBalancer(config: { kind: 'haproxy' } & HaproxyBalancerOptions): Promise<HaproxyBalancer>;
export function createBalancer(config: BalancerConfig): Promise<Balancer>;
export async function createBalancer(config: BalancerConfig): Promise<Balancer> {
  switch (config.kind) {
    case 'builtin': {
      const { kind: _kind, ...options } = config;
      return createBuiltinBalancer(options);
    }
    case 'fake': {
      const { kind: _kind, ...options } = config;
      return createFakeBalancer(options);
    }
    case 'haproxy': {
      const { kind: _kind, ...options } = config;
      return createHaproxyBalancer(options);
    }
  }
}

export type { Balancer, BalancerStats, LbOperationState, LbOperationStatus, LbService, Upstream } from './types.ts';
export type { BuiltinBalancer, BuiltinBalancerOptions } from './builtin/index.ts';
export type { FakeBalancer, FakeBalancerOptions, FakeBehaviour } from './fake/index.ts';
export { createBuiltinBalancer } from './builtin/index.ts';
export { createFakeBalancer } from './fake/index.ts';
export type { HaproxyBalancer, HaproxyBalancerOptions } from './haproxy/index.ts';
export { createHaproxyBalancer } from './haproxy/index.ts';
