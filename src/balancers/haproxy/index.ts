export { createHaproxyBalancer, type HaproxyBalancer, type HaproxyBalancerOptions } from './haproxy-balancer.ts';
export { HaproxyCommandError, HaproxyUnreachableError, haproxyCommand } from './runtime-api.ts';
