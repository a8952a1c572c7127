// Path routing: longest basePath prefix wins, matching on path-segment boundaries.
import { matchesBasePath, normalizeBasePath } from '../base-path.ts';

/** The path part of a request target: origin-form ("/a?b") or absolute-form ("http://h/a?b"). */
export function requestPath(url: string | undefined): string {
  let target = url ?? '/';
  if (!target.startsWith('/')) {
    try {
      target = new URL(target).pathname;
    } catch {
      return '/';
    }
  }
  const end = target.search(/[?#]/);
  return end === -1 ? target : target.slice(0, end);
}

export class RouteTable<T> {
  // Sorted longest first, so the first match is the longest one.
  #routes: { basePath: string; key: string; value: T }[] = [];

  set(key: string, basePath: string, value: T): void {
    this.#routes = this.#routes.filter((r) => r.key !== key);
    this.#routes.push({ basePath: normalizeBasePath(basePath), key, value });
    this.#routes.sort((a, b) => b.basePath.length - a.basePath.length);
  }

  delete(key: string): void {
    this.#routes = this.#routes.filter((r) => r.key !== key);
  }

  /** The key already routing exactly this basePath, if any. */
  owner(basePath: string): string | undefined {
    const normalized = normalizeBasePath(basePath);
    return this.#routes.find((r) => r.basePath === normalized)?.key;
  }

  match(path: string): T | undefined {
    return this.#routes.find((r) => matchesBasePath(path, r.basePath))?.value;
  }
}
