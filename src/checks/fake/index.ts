// A scriptable acceptance check for engine tests: answers what the test sets, counts calls.
import type { AcceptanceCheckSpec } from '../../core/model.ts';
import type { Check, CheckAnswer, CheckContext, CheckFactory } from '../types.ts';

export class FakeCheck implements Check {
  answer: CheckAnswer | (() => CheckAnswer) = { state: 'PENDING', message: 'waiting' };
  readonly calls: { step: number; deployId: string }[] = [];

  constructor(
    readonly name: string,
    readonly intervalSeconds = 1,
    readonly failOnError = true,
    readonly timeoutSeconds = 5,
  ) {}

  async evaluate(context: CheckContext): Promise<CheckAnswer> {
    this.calls.push({ step: context.step, deployId: context.deploy.id });
    return typeof this.answer === 'function' ? this.answer() : this.answer;
  }
}

/** `--checks fake`: every declared check succeeds at its first call (the scale bench's deploys). */
const succeeding = (spec: AcceptanceCheckSpec): Check => {
  const check = new FakeCheck(spec.name, spec.intervalSeconds, spec.failOnError, spec.timeoutSeconds);
  check.answer = { state: 'SUCCEEDED', message: 'fake check' };
  return check;
};

export const fakeCheckFactories: Record<string, CheckFactory> = {
  http: succeeding,
  command: succeeding,
  lb: succeeding,
  prometheus: succeeding,
};
