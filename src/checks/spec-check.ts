// What every acceptance check takes from its spec (name, interval, timeout, failOnError); the
// implementation brings only its verdict.
import type { AcceptanceCheckSpec } from '../core/model.ts';
import type { Check } from './types.ts';

export function specCheck(spec: AcceptanceCheckSpec, evaluate: Check['evaluate']): Check {
  return {
    name: spec.name,
    intervalSeconds: spec.intervalSeconds,
    timeoutSeconds: spec.timeoutSeconds,
    failOnError: spec.failOnError,
    evaluate,
  };
}
