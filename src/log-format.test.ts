import { PassThrough } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { formatLogLine, prettyStream } from './log-format.ts';

describe('pretty log lines', () => {
  it('shows time, level, message and the fields, no JSON', () => {
    const line = JSON.stringify({
      level: 40,
      time: Date.UTC(2024, 0, 2, 3, 4, 5, 6),
      pid: 1,
      hostname: 'h',
      name: 'fledge',
      msg: 'the data dir was readable',
      dataDir: '/srv/fledge',
      was: '755',
      note: 'two words',
    });
    expect(formatLogLine(line, false)).toBe('03:04:05.006 WARN  the data dir was readable  dataDir=/srv/fledge was=755 note="two words"');
    expect(formatLogLine(line, true)).toContain('\u001b[33mWARN \u001b[0m');
  });

  it('passes a line that is not JSON through', () => {
    expect(formatLogLine('plain text', false)).toBe('plain text');
  });

  it('formats what pino writes, line by line', async () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (c: Buffer) => (text += c.toString('utf8')));
    const logger = pino({ base: { name: 'fledge' } }, prettyStream(out, false));
    logger.info({ port: 7099 }, 'listening');
    logger.error({ err: new Error('disk full') }, 'store write failed');
    await new Promise((r) => setTimeout(r, 10));
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO {2}listening {2}port=7099$/);
    expect(lines[1]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} ERROR store write failed$/);
    expect(lines[2]).toBe('Error: disk full');
  });
});
