export { createBuiltinBalancer, type BuiltinBalancer, type BuiltinBalancerOptions } from './builtin-balancer.ts';
