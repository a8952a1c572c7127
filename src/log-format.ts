// `--log-format pretty`: pino's JSON lines turned into one readable line each on a terminal
// ("12:00:01.123 WARN  the data dir was readable by other users  dataDir=/srv/fledge was=755").
// A few lines of our own rather than pino-pretty and its dependencies. JSON stays the format
// for files, journald and log shippers.
import { Writable } from 'node:stream';

const LEVELS: Record<number, [string, number]> = {
  10: ['TRACE', 2],
  20: ['DEBUG', 2],
  30: ['INFO ', 36],
  40: ['WARN ', 33],
  50: ['ERROR', 31],
  60: ['FATAL', 31],
};
/** Fields every line has, or that the line shows elsewhere. */
const HIDDEN = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'name']);

export function formatLogLine(line: string, colour: boolean): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const paint = (code: number, text: string) => (colour ? `\u001b[${code}m${text}\u001b[0m` : text);
  const [name, code] = LEVELS[Number(rec.level)] ?? ['LOG  ', 0];
  const time = typeof rec.time === 'number' ? new Date(rec.time).toISOString().slice(11, 23) : '';
  const fields = Object.entries(rec)
    .filter(([k]) => !HIDDEN.has(k) && !(k === 'err' && (rec.err as { stack?: string } | undefined)?.stack))
    .map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`);
  const err = rec.err as { stack?: string } | undefined;
  const stack = err?.stack ? `\n${paint(2, err.stack)}` : '';
  return `${paint(2, time)} ${paint(code, name)} ${String(rec.msg ?? '')}${fields.length > 0 ? `  ${paint(2, fields.join(' '))}` : ''}${stack}`;
}

/** A stream for pino that writes formatted lines to `out`. */
export function prettyStream(out: NodeJS.WritableStream, colour: boolean): Writable {
  let rest = '';
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      const lines = (rest + chunk.toString('utf8')).split('\n');
      rest = lines.pop() ?? '';
      for (const l of lines) if (l !== '') out.write(`${formatLogLine(l, colour)}\n`);
      done();
    },
    final(done) {
      if (rest !== '') out.write(`${formatLogLine(rest, colour)}\n`);
      done();
    },
  });
}
