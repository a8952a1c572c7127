// Building blocks shared by the input schemas: issues, warnings, null handling and the
// Singularity-but-ignored fields.
import { z } from 'zod';

/** One reason an input is rejected: the full field path and the rule it broke. */
export interface Issue {
  field: string;
  rule: string;
}

export interface ParseOptions {
  /** what the body is, for the message: "Invalid <label>: ..." */
  label?: string;
  /** prefix of every field path (a bare deploy object is named `deploy.…`) */
  root?: string;
}

const described = new WeakMap<z.ZodType, ParseOptions>();

/** Records how parseInput names a schema's input when the caller does not say. */
export function describeInput<T extends z.ZodType>(schema: T, options: ParseOptions): T {
  described.set(schema, options);
  return schema;
}

export const describedAs = (schema: z.ZodType): ParseOptions | undefined => described.get(schema);

/** A warning recorded by a schema, relative to the object that produced it. */
interface PendingWarning {
  field: string;
  message: string;
}

// Warnings ride on the parsed object under a hidden key so that a schema can be nested
// anywhere (deploy alone, deploy inside a body) and parseInput still names the full path.
const WARNINGS = Symbol('fledge.inputWarnings');

export function attachWarnings<T extends object>(value: T, warnings: PendingWarning[]): T {
  if (warnings.length > 0) Object.defineProperty(value, WARNINGS, { value: warnings, enumerable: false, configurable: true });
  return value;
}

/** Collects (and removes) the warnings attached anywhere inside a parsed value. */
export function takeWarnings(value: unknown, root: string): string[] {
  const out: string[] = [];
  const walk = (v: unknown, path: string) => {
    if (v === null || typeof v !== 'object') return;
    const own = (v as { [WARNINGS]?: PendingWarning[] })[WARNINGS];
    if (own) {
      for (const w of own) out.push(`${joinPath(path, w.field)}: ${w.message}`);
      delete (v as { [WARNINGS]?: PendingWarning[] })[WARNINGS];
    }
    if (Array.isArray(v)) v.forEach((item, i) => walk(item, joinPath(path, i)));
    else for (const [k, item] of Object.entries(v)) walk(item, joinPath(path, k));
  };
  walk(value, root);
  return out;
}

/** `deploy` + `acceptanceChecks` + 1 → `deploy.acceptanceChecks[1]`. */
export function joinPath(base: string, ...segments: (string | number | symbol)[]): string {
  let out = base;
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`;
    else if (s !== '') out = out === '' ? String(s) : `${out}.${String(s)}`;
  }
  return out;
}

/**
 * Singularity (Jackson) writes absent Optionals as null; a user re-posting such JSON means
 * "not set", so null-valued keys are dropped before validation (except the listed ones,
 * where null is a real value).
 */
export function nullsAsAbsent<T extends z.ZodType>(schema: T, keep: readonly string[] = []) {
  return z.preprocess((input) => {
    if (input === null || typeof input !== 'object' || Array.isArray(input)) return input;
    return Object.fromEntries(Object.entries(input).filter(([k, v]) => v !== null || keep.includes(k)));
  }, schema);
}

/** Shape entries for accepted-but-ignored Singularity fields: any value, described for OpenAPI. */
export function ignoredFields(fields: Readonly<Record<string, string>>): Record<string, z.ZodOptional<z.ZodUnknown>> {
  return Object.fromEntries(
    Object.entries(fields).map(([name, why]) => [
      name,
      boundedJson().optional().describe(`Singularity field, stored but not acted on: ${why}.`),
    ]),
  );
}

/** Moves the ignored fields present in `input` into `extra` and warns about each. */
export function splitIgnored(
  input: Record<string, unknown>,
  fields: Readonly<Record<string, string>>,
): { extra: Record<string, unknown>; warnings: PendingWarning[] } {
  const extra: Record<string, unknown> = {};
  const warnings: PendingWarning[] = [];
  for (const [name, why] of Object.entries(fields)) {
    if (input[name] === undefined) continue;
    extra[name] = input[name];
    warnings.push({ field: name, message: `accepted and stored, but Fledge does not act on it (${why})` });
  }
  return { extra, warnings };
}

/** Drops undefined-valued keys so normalised objects serialise without noise. */
export function compact<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

/** A custom issue naming several sibling fields at once (e.g. both an alias and its key). */
export function conflict(ctx: z.RefinementCtx, path: (string | number)[], others: string[], rule: string): void {
  ctx.addIssue({ code: 'custom', path, message: rule, params: { also: others } });
}

/**
 * Bounds of every input, so no body can make Fledge store, loop over or compute with
 * something unbounded (1 MiB bodies bound the total; these bound each part).
 */
export const LIMITS = {
  /** names, groups, versions, domains */
  name: 200,
  message: 10_000,
  /** a command line or one argument (Linux takes 128 KiB per argument) */
  command: 100_000,
  arguments: 1_000,
  envName: 256,
  envValue: 100_000,
  envKeys: 1_000,
  /** taskEnv: instance numbers */
  taskEnvInstances: 1_000,
  metadataKeys: 100,
  metadataValue: 10_000,
  url: 4_096,
  path: 1_024,
  /** groups, domains, routes, owners, uris, status codes */
  list: 100,
  acceptanceChecks: 50,
  /** every seconds field: 30 days */
  seconds: 30 * 24 * 3600,
  /** every millis field: 30 days */
  millis: 30 * 24 * 3600 * 1000,
  /** the absolute cap of `instances`; the server's --max-instances is checked in the API */
  instances: 100_000,
  /** retries, failures, cycles */
  count: 10_000,
  ports: 64,
  cpus: 10_000,
  /** memory and disk, MB */
  megabytes: 1_000_000_000,
  /** an artifact's declared filesize (the fetcher's own --artifact-max-mb bounds what it downloads) */
  artifactBytes: 1 << 40,
  /** JSON stored as given (Singularity fields Fledge ignores, LB options, container info) */
  json: { depth: 16, items: 1_000, keys: 1_000, string: 100_000 },
} as const;

export const text = (max: number = LIMITS.name) => z.string().max(max);
export const nonEmpty = (max: number = LIMITS.name) => z.string().min(1).max(max);
/** Seconds may be fractional (sub-second health intervals are useful in tests and fast services). */
export const seconds = (min: 0 | 1) => (min === 0 ? z.number().min(0) : z.number().positive()).max(LIMITS.seconds);
export const millis = () => z.int().min(0).max(LIMITS.millis);
export const count = (min = 0, max: number = LIMITS.count) => z.int().min(min).max(max);
export const list = <T extends z.ZodType>(item: T, max: number = LIMITS.list) => z.array(item).max(max);

/** A record of at most `max` keys (zod checks every key and value first, within the body limit). */
export function boundedRecord<K extends z.core.$ZodRecordKey, V extends z.ZodType>(key: K, value: V, max: number) {
  return z.record(key, value).refine((r) => Object.keys(r).length <= max, { error: `must have at most ${max} keys` });
}

/** Any JSON value, within LIMITS.json (depth, items per array, keys per object, string length). */
export function boundedJson() {
  return z.unknown().superRefine((value, ctx) => {
    const problem = jsonProblem(value);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });
}

function jsonProblem(root: unknown): string | undefined {
  const { depth, items, keys, string } = LIMITS.json;
  const stack: { value: unknown; level: number }[] = [{ value: root, level: 0 }];
  while (stack.length > 0) {
    const { value, level } = stack.pop() as { value: unknown; level: number };
    if (typeof value === 'string') {
      if (value.length > string) return `must not hold strings longer than ${string} characters`;
      continue;
    }
    if (value === null || typeof value !== 'object') continue;
    if (level >= depth) return `must not nest deeper than ${depth} levels`;
    const children = Array.isArray(value) ? value : Object.values(value);
    if (Array.isArray(value) && value.length > items) return `must not hold arrays of more than ${items} items`;
    if (!Array.isArray(value) && children.length > keys) return `must not hold objects of more than ${keys} keys`;
    for (const child of children) stack.push({ value: child, level: level + 1 });
  }
  return undefined;
}
