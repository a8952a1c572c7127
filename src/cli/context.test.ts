import { describe, expect, it } from 'vitest';
import { jsonErrorPosition, serverUrl, UsageError } from './context.ts';
import { makeStyle, plain, sparkline } from './style.ts';

describe('--server', () => {
  it('takes a URL, host:port without a scheme, or a bare port', () => {
    expect(serverUrl('http://10.0.0.5:7099/')).toBe('http://10.0.0.5:7099');
    expect(serverUrl('https://fledge.example')).toBe('https://fledge.example');
    expect(serverUrl('localhost:7099')).toBe('http://localhost:7099');
    expect(serverUrl('10.0.0.5:8080')).toBe('http://10.0.0.5:8080');
    expect(serverUrl('7099')).toBe('http://127.0.0.1:7099');
  });

  it('refuses what is not http(s) with a usage error naming the flag', () => {
    expect(() => serverUrl('ftp://x')).toThrow(UsageError);
    expect(() => serverUrl('ftp://x')).toThrow(/--server: ftp: is not http/);
    expect(() => serverUrl('a b:c')).toThrow(/--server/);
  });
});

describe('JSON syntax errors', () => {
  const position = (text: string) => {
    try {
      JSON.parse(text);
    } catch (err) {
      return jsonErrorPosition(text, err);
    }
    return undefined;
  };

  it('point at the line and column', () => {
    expect(position('{\n  "id": "web",\n  "instances": 3,\n}')).toEqual({ line: 4, column: 1 });
    expect(position('{\n  "id": web\n}')).toEqual({ line: 2, column: 9 });
    expect(position('{"id": "web"')).toEqual({ line: 1, column: 13 });
  });
});

describe('style', () => {
  it('colours on a terminal, the same words plain when piped', () => {
    const tty = makeStyle(true);
    const piped = makeStyle(false);
    expect(tty.ok('done')).toBe('\u001b[32mdone\u001b[39m');
    expect(plain(tty.ok('done'))).toBe(piped.ok('done'));
    expect([tty.symbols.ok, piped.symbols.ok]).toEqual(['✓', 'OK']);
  });

  it('draws sparklines scaled to the largest value, gaps for missing points', () => {
    expect(sparkline([0, 1, 2, 4, null, 7], true)).toBe('▁▂▃▅·█');
    expect(sparkline([0, 0], true)).toBe('▁▁');
    expect(sparkline([1, 2], false)).toBe('=#');
  });
});
