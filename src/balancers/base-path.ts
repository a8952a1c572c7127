// Service base paths, shared by the balancer implementations.

/** "/api/" and "api" both mean "/api"; "" and "/" mean the root, which matches every path. */
export function normalizeBasePath(basePath: string): string {
  let p = basePath.trim();
  if (!p.startsWith('/')) p = `/${p}`;
  while (p.length > 1 && p.endsWith('/')) p = p.slice(0, -1);
  return p;
}

/** `/api` matches `/api`, `/api/` and `/api/x`, but not `/apix`. */
export function matchesBasePath(path: string, basePath: string): boolean {
  if (basePath === '/') return true;
  if (!path.startsWith(basePath)) return false;
  const next = path.charAt(basePath.length);
  return next === '' || next === '/';
}
