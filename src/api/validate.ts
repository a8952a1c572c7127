// Parse-or-400: the one place untrusted bodies become domain values.
import type { z } from 'zod';
import { badRequest } from '../core/errors.ts';
import { parseInput, schemas } from './schemas/index.ts';

export { schemas };

export function parse<S extends z.ZodType>(schema: S, body: unknown): { value: z.output<S>; warnings: string[] } {
  const result = parseInput(schema, body);
  if (!result.ok) throw badRequest(result.message, result.details);
  return { value: result.value, warnings: result.warnings };
}
