import { pathToFileURL } from 'node:url';
import type { Check, CheckFactory } from './types.ts';
import { createCommandCheck } from './command/index.ts';
import { createHttpCheck } from './http/index.ts';
import { createLbCheck } from './lb/index.ts';
import { prometheusCheckFactory } from './prometheus/index.ts';
import type { PrometheusSettings } from './prometheus/target.ts';

export interface CheckSettings {
  /** --prometheus-url and --prometheus-allow */
  prometheus: PrometheusSettings;
}

/** Deploy-declared check types; `manual` is answered by the engine itself (advance/reject). */
export function checkFactories(settings: CheckSettings): Record<string, CheckFactory> {
  return {
    http: createHttpCheck,
    command: createCommandCheck,
    lb: createLbCheck,
    prometheus: prometheusCheckFactory(settings.prometheus),
  };
}

export type { Check, CheckAnswer, CheckContext, CheckFactory } from './types.ts';

/**
 * Server-wide acceptance hooks from modules named in config. A module exports (default or
 * named `checks`) a Check, an array of Checks, or a function returning either.
 */
export async function loadServerChecks(paths: string[]): Promise<Check[]> {
  const checks: Check[] = [];
  for (const path of paths) {
    let mod: Record<string, unknown>;
    try {
      mod = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
    } catch (err) {
      throw new Error(`Cannot load check module ${path}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    let exported = mod.default ?? mod.checks;
    if (typeof exported === 'function') exported = await (exported as () => unknown)();
    const list = Array.isArray(exported) ? exported : [exported];
    for (const c of list) {
      if (!isCheck(c)) throw new Error(`Check module ${path} must export a check ({ name, evaluate(context) }) or an array of them`);
      checks.push({ intervalSeconds: 5, timeoutSeconds: 30, failOnError: true, ...c } as Check);
    }
  }
  const names = checks.map((c) => c.name);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup) throw new Error(`Two server checks are named ${dup}`);
  return checks;
}

function isCheck(value: unknown): value is Pick<Check, 'name' | 'evaluate'> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Check).name === 'string' &&
    typeof (value as Check).evaluate === 'function'
  );
}
