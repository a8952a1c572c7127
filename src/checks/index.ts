import type { CheckFactory } from './types.ts';
import { createCommandCheck } from './command/index.ts';
import { createHttpCheck } from './http/index.ts';

/** Deploy-declared check types; `manual` is answered by the engine itself (advance/reject). */
export const checkFactories: Record<string, CheckFactory> = {
  http: createHttpCheck,
  command: createCommandCheck,
};

export type { Check, CheckAnswer, CheckContext, CheckFactory } from './types.ts';
