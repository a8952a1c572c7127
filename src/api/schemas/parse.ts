// Untrusted JSON → normalised value, or a 400 message that names every field and rule.
import type { z } from 'zod';
import { describedAs, joinPath, takeWarnings, type Issue, type ParseOptions } from './common.ts';
import { coerceLikeJackson } from './jackson.ts';

export type ParseResult<T> = { ok: true; value: T; warnings: string[] } | { ok: false; message: string; details: Issue[] };

export type { ParseOptions };

export function parseInput<S extends z.ZodType>(schema: S, body: unknown, options: ParseOptions = {}): ParseResult<z.output<S>> {
  const { label = 'body', root = '' } = { ...describedAs(schema), ...options };
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    const got = body === null ? 'null' : Array.isArray(body) ? 'an array' : typeof body;
    return {
      ok: false,
      message: `Request body must be a JSON object (got ${got})`,
      details: [{ field: root || 'body', rule: 'must be a JSON object' }],
    };
  }
  // Jackson's leniencies first, so the schema's bounds judge the coerced values.
  const coerced = coerceLikeJackson(schema, body, root);
  const result = schema.safeParse(coerced.value, { error: ruleFor });
  if (result.success) {
    const warnings = [...coerced.warnings, ...takeWarnings(result.data, root)];
    return { ok: true, value: result.data, warnings };
  }
  return { ok: false, ...describeIssues(label, root, result.error.issues) };
}

/** A 400 names at most this many issues (a 50,000-item array must not make a megabyte reply). */
export const MAX_ISSUES = 20;
const MAX_FIELD_TEXT = 200;

function describeIssues(label: string, root: string, issues: readonly z.core.$ZodIssue[]): { message: string; details: Issue[] } {
  const details: Issue[] = [];
  const parts: string[] = [];
  const unknown: string[] = [];
  for (const issue of issues) {
    const path = issue.path.filter((s): s is string | number => typeof s !== 'symbol');
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        const field = clip(joinPath(root, ...path, key));
        unknown.push(field);
        details.push({ field, rule: 'unknown field' });
      }
      continue;
    }
    const rule = issue.code === 'invalid_key' ? `invalid key: ${issue.issues[0]?.message ?? issue.message}` : issue.message;
    const also = (issue.code === 'custom' && Array.isArray(issue.params?.also) ? issue.params.also : []) as string[];
    const fields = [joinPath(root, ...path), ...also.map((k) => joinPath(root, ...path.slice(0, -1), k))].map(clip);
    for (const field of fields) details.push({ field, rule });
    parts.push(`${fields.join(' and ')}: ${rule}`);
  }
  if (unknown.length > 0) parts.push(`Unknown field(s): ${unknown.slice(0, MAX_ISSUES).join(', ')}${more(unknown.length)}`);
  const shown = parts.slice(0, MAX_ISSUES);
  const message = `Invalid ${label}: ${shown.join('; ')}${more(parts.length)}`;
  const kept = details.slice(0, MAX_ISSUES);
  if (details.length > MAX_ISSUES) kept.push({ field: root || 'body', rule: `and ${details.length - MAX_ISSUES} more issue(s)` });
  return { message, details: kept };
}

const more = (n: number) => (n > MAX_ISSUES ? `; and ${n - MAX_ISSUES} more` : '');
const clip = (field: string) => (field.length > MAX_FIELD_TEXT ? `${field.slice(0, MAX_FIELD_TEXT)}…` : field);

// Rule wording for zod's built-in issues (schema-level messages take precedence).
function ruleFor(issue: z.core.$ZodRawIssue): string | undefined {
  if (issue.input === undefined && (issue.code === 'invalid_type' || issue.code === 'invalid_value')) return 'is required';
  switch (issue.code) {
    case 'invalid_type': {
      const expected = issue.expected as string;
      if (expected === 'int') return 'must be an integer';
      if (expected === 'object' || expected === 'record') return `must be an object${received(issue.input)}`;
      if (expected === 'array') return `must be an array${received(issue.input)}`;
      return `must be a ${expected}${received(issue.input)}`;
    }
    case 'too_small':
      if (issue.origin === 'string')
        return Number(issue.minimum) <= 1 ? 'must not be empty' : `must be at least ${issue.minimum} characters`;
      if (issue.origin === 'array') return `must have at least ${issue.minimum} item(s)`;
      return `must be ${issue.inclusive ? '>=' : '>'} ${issue.minimum}`;
    case 'too_big':
      if (issue.origin === 'string') return `must be at most ${issue.maximum} characters`;
      if (issue.origin === 'array') return `must have at most ${issue.maximum} item(s)`;
      return `must be ${issue.inclusive ? '<=' : '<'} ${issue.maximum}`;
    case 'invalid_value':
      return issue.values.length === 1 ? `must be ${JSON.stringify(issue.values[0])}` : `must be one of ${issue.values.join(', ')}`;
    case 'invalid_union': {
      const options = (issue as { options?: unknown[] }).options;
      if (options) return `must be one of ${options.join(', ')}`;
      return 'does not match any allowed shape';
    }
    case 'invalid_format':
      return `has an invalid format (${issue.format})`;
    default:
      return undefined;
  }
}

function received(input: unknown): string {
  const kind = input === null ? 'null' : Array.isArray(input) ? 'an array' : typeof input;
  return ` (got ${kind})`;
}
