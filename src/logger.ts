import { pino } from 'pino';

/** The subset of pino the code base uses, so tests can pass a silent or capturing logger. */
export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export function createLogger(level = process.env.FLEDGE_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { name: 'fledge' } });
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {}, debug() {} };
