// What Jackson (with Dropwizard's fuzzy enums) tolerates in Singularity's JSON, tolerated here
// too, before validation: a pass over the input guided by the schema that will validate it.
// Each coercion is named in `warnings`; the schema's bounds then apply to the coerced value,
// so `"instances": "999999999"` is still refused by the instance bound.
//
// - numeric strings where a number goes ("instances": "2", which Singularity's UI sends);
//   the empty string there reads as absent, as Jackson reads it for an Optional;
// - "true" / "false" where a boolean goes;
// - numbers and booleans where a string goes (env, taskEnv and metadata values, versions...);
// - enum values in any case, with `-`, `.` or spaces for `_`, and surrounding whitespace
//   (Dropwizard's FuzzyEnumModule strips inner whitespace; both readings are accepted).
import type { z } from 'zod';
import { joinPath } from './common.ts';

export interface Coerced {
  value: unknown;
  warnings: string[];
}

type Def = { type: string } & Record<string, unknown>;
const defOf = (schema: unknown): Def => (schema as { def: Def }).def;

const INTEGER = /^[+-]?\d{1,16}$/;
const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const WRAPPERS = new Set(['optional', 'nullable', 'default', 'prefault', 'readonly', 'catch', 'nonoptional']);

/** The schema that decides how a value is read: wrappers, preprocessors and transforms peeled off. */
function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema;
  for (let guard = 0; guard < 32; guard++) {
    const def = defOf(s);
    if (WRAPPERS.has(def.type)) s = def.innerType as z.ZodType;
    else if (def.type === 'lazy') s = (def.getter as () => z.ZodType)();
    else if (def.type === 'pipe') {
      // z.preprocess(fn, schema) is pipe(transform, schema); x.transform(fn) is pipe(x, transform).
      const input = def.in as z.ZodType;
      s = defOf(input).type === 'transform' ? (def.out as z.ZodType) : input;
    } else return s;
  }
  return s;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

const normaliseEnum = (s: string) =>
  s
    .trim()
    .toUpperCase()
    .replace(/[-.\s]/g, '_');
const squeezeEnum = (s: string) => s.replace(/\s/g, '').toUpperCase().replace(/[-.]/g, '_');

function fuzzyEnum(value: string, options: readonly string[]): string | undefined {
  if (options.includes(value)) return value;
  return options.find((o) => normaliseEnum(o) === normaliseEnum(value) || normaliseEnum(o) === squeezeEnum(value));
}

/** Whether `value` already has the kind `schema` reads (no coercion needed). */
function fits(schema: z.ZodType, value: unknown): boolean {
  const def = defOf(unwrap(schema));
  switch (def.type) {
    case 'number':
      return typeof value === 'number';
    case 'boolean':
      return typeof value === 'boolean';
    case 'string':
      return typeof value === 'string';
    case 'enum':
      return Object.values(def.entries as Record<string, string>).includes(value as string);
    case 'literal':
      return (def.values as unknown[]).includes(value);
    case 'object':
    case 'record':
      return isPlainObject(value);
    case 'array':
      return Array.isArray(value);
    case 'union':
      return (def.options as z.ZodType[]).some((o) => fits(o, value));
    default:
      return true;
  }
}

const ABSENT = Symbol('absent');
/** An answer names at most this many coercions (a 50,000-item array of numbers is read, not listed). */
export const MAX_COERCION_WARNINGS = 20;

export function coerceLikeJackson(schema: z.ZodType, input: unknown, root: string): Coerced {
  const warnings: string[] = [];
  let more = 0;
  const warn = (path: string, message: string) => {
    if (warnings.length < MAX_COERCION_WARNINGS) warnings.push(`${path || 'body'}: ${message}`);
    else more++;
  };

  const walk = (s: z.ZodType, value: unknown, path: string): unknown => {
    if (value === null || value === undefined) return value;
    const target = unwrap(s);
    const def = defOf(target);
    switch (def.type) {
      case 'object': {
        if (!isPlainObject(value)) return value;
        const shape = def.shape as Record<string, z.ZodType>;
        let out: Record<string, unknown> | undefined;
        for (const [key, item] of Object.entries(value)) {
          const field = shape[key];
          if (!field) continue;
          const next = walk(field, item, joinPath(path, key));
          if (next === item) continue;
          out ??= { ...value };
          if (next === ABSENT) delete out[key];
          else out[key] = next;
        }
        return out ?? value;
      }
      case 'record': {
        if (!isPlainObject(value)) return value;
        let out: Record<string, unknown> | undefined;
        for (const [key, item] of Object.entries(value)) {
          const next = walk(def.valueType as z.ZodType, item, joinPath(path, key));
          if (next === item || next === ABSENT) continue;
          out ??= { ...value };
          out[key] = next;
        }
        return out ?? value;
      }
      case 'array': {
        if (!Array.isArray(value)) return value;
        let changed = false;
        const out = value.map((item, i) => {
          const next = walk(def.element as z.ZodType, item, joinPath(path, i));
          if (next !== item && next !== ABSENT) changed = true;
          return next === ABSENT ? item : next;
        });
        return changed ? out : value;
      }
      case 'union': {
        const options = def.options as z.ZodType[];
        const discriminator = def.discriminator as string | undefined;
        if (isPlainObject(value)) {
          const chosen = discriminator
            ? options.find((o) => {
                const shape = defOf(unwrap(o)).shape as Record<string, z.ZodType> | undefined;
                return shape?.[discriminator] !== undefined && fits(shape[discriminator] as z.ZodType, value[discriminator]);
              })
            : options.find((o) => fits(o, value));
          return chosen ? walk(chosen, value, path) : value;
        }
        if (options.some((o) => fits(o, value))) return value;
        for (const o of options) {
          const next = walk(o, value, path);
          if (next !== value) return next;
        }
        return value;
      }
      case 'number': {
        if (typeof value !== 'string') return value;
        const text = value.trim();
        if (text === '') {
          warn(path, 'read the empty string as absent (as Singularity does)');
          return ABSENT;
        }
        const integer = def.format === 'safeint' || def.format === 'int32';
        if (!(integer ? INTEGER : DECIMAL).test(text)) return value;
        const n = Number(text);
        if (!Number.isFinite(n)) return value;
        warn(path, `read the string ${JSON.stringify(value)} as the number ${n} (Singularity reads numeric strings as numbers)`);
        return n;
      }
      case 'boolean': {
        if (typeof value !== 'string') return value;
        const text = value.trim().toLowerCase();
        if (text !== 'true' && text !== 'false') return value;
        warn(path, `read the string ${JSON.stringify(value)} as the boolean ${text} (as Singularity does)`);
        return text === 'true';
      }
      case 'string': {
        if (typeof value !== 'number' && typeof value !== 'boolean') return value;
        const text = String(value);
        warn(path, `read the ${typeof value} ${text} as the string ${JSON.stringify(text)} (as Singularity does)`);
        return text;
      }
      case 'enum': {
        if (typeof value !== 'string') return value;
        const options = Object.values(def.entries as Record<string, string>);
        const match = fuzzyEnum(value, options);
        if (match === undefined || match === value) return value;
        warn(path, `read ${JSON.stringify(value)} as ${match} (Singularity reads enum values in any case, with -, . or spaces for _)`);
        return match;
      }
      default:
        return value;
    }
  };

  const value = walk(schema, input, root);
  if (more > 0) warnings.push(`${root || 'body'}: and ${more} more value(s) read the same way`);
  return { value: value === ABSENT ? undefined : value, warnings };
}
