import { pino } from 'pino';
import { prettyStream } from './log-format.ts';

/** The subset of pino the code base uses, so tests can pass a silent or capturing logger. */
export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export type LogFormat = 'auto' | 'pretty' | 'json';

/** JSON lines on stdout; `pretty` (the default on a terminal) one readable line each. */
export function createLogger(level = process.env.FLEDGE_LOG_LEVEL ?? 'info', format: LogFormat = 'json'): Logger {
  const pretty = format === 'pretty' || (format === 'auto' && process.stdout.isTTY === true);
  if (!pretty) return pino({ level, base: { name: 'fledge' } });
  const colour = process.stdout.isTTY === true && !process.env.NO_COLOR;
  return pino({ level, base: { name: 'fledge' } }, prettyStream(process.stdout, colour));
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {}, debug() {} };
