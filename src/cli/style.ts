// Colour and symbols on a terminal, plain text when piped or NO_COLOR is set: the same words
// either way, so logs and scripts read what a person sees.
export interface Style {
  readonly tty: boolean;
  ok(text: string): string;
  bad(text: string): string;
  warn(text: string): string;
  dim(text: string): string;
  bold(text: string): string;
  /** ✓ / ✗ / … on a terminal; OK / FAILED / ... otherwise */
  readonly symbols: { ok: string; bad: string; wait: string; bullet: string };
}

const ansi = (open: number, close: number) => (text: string) => `\u001b[${open}m${text}\u001b[${close}m`;

export function makeStyle(colour: boolean): Style {
  if (!colour) {
    const same = (t: string) => t;
    return {
      tty: false,
      ok: same,
      bad: same,
      warn: same,
      dim: same,
      bold: same,
      symbols: { ok: 'OK', bad: 'FAILED', wait: '...', bullet: '-' },
    };
  }
  return {
    tty: true,
    ok: ansi(32, 39),
    bad: ansi(31, 39),
    warn: ansi(33, 39),
    dim: ansi(2, 22),
    bold: ansi(1, 22),
    symbols: { ok: '✓', bad: '✗', wait: '…', bullet: '•' },
  };
}

/** Text without ANSI escapes (widths, log files). */
export function plain(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\u001b\[[0-9;]*[A-Za-z]/g, '');
}

/** A sparkline of values (▁▂▃▄▅▆▇█), '·' for a missing point; plain ASCII without colour. */
export function sparkline(values: readonly (number | null)[], unicode: boolean): string {
  const present = values.filter((v): v is number => v !== null);
  const max = Math.max(0, ...present);
  const marks = unicode ? '▁▂▃▄▅▆▇█' : '_.-=*#';
  return values
    .map((v) => {
      if (v === null) return unicode ? '·' : ' ';
      if (max === 0) return marks[0];
      return marks[Math.min(marks.length - 1, Math.round((v / max) * (marks.length - 1)))];
    })
    .join('');
}
