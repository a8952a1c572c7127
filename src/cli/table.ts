// A tiny column formatter: enough for `kubectl get`-style listings without a dependency.

export type Cell = string | number | boolean | undefined | null;

const text = (c: Cell) => (c === undefined || c === null || c === '' ? '-' : String(c));

/** Header row plus rows, each column padded to its widest cell, two spaces apart. */
export function table(headers: string[], rows: Cell[][]): string {
  const cells = [headers, ...rows.map((r) => headers.map((_, i) => text(r[i])))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** `label  value` pairs with aligned values, for single-object views. */
export function keyValues(pairs: [string, Cell][]): string {
  const width = Math.max(0, ...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${k.padEnd(width)}  ${text(v)}`.trimEnd()).join('\n');
}
