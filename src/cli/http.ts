// The CLI's HTTP transport for FledgeClient: node:http (node:https only for an https URL).
// Node's fetch loads undici and its WebAssembly parser on first use, ~50 ms of every command's
// start on a 2-core machine (bench/cli-startup.ts); node:http is built in and ready.
import type { IncomingMessage } from 'node:http';
import type { HttpAnswer, Transport } from '../api/client.ts';

export const nodeTransport: Transport = async (url, init) => {
  const target = new URL(url);
  const { request } = target.protocol === 'https:' ? await import('node:https') : await import('node:http');
  const headers: Record<string, string | number> = { ...init.headers };
  if (init.body !== undefined) headers['Content-Length'] = Buffer.byteLength(init.body);
  return new Promise<HttpAnswer>((resolve, reject) => {
    // A connection per call (agent: false): a reused keep-alive socket the server is closing
    // at that moment fails the call (a watch runs for minutes), and a CLI makes few calls.
    const req = request(target, { method: init.method, headers, agent: false, ...(init.signal ? { signal: init.signal } : {}) }, (res) => {
      res.setEncoding('utf8');
      const status = res.statusCode ?? 0;
      resolve({
        ok: status >= 200 && status < 300,
        status,
        statusText: res.statusMessage ?? '',
        text: () => readAll(res),
        chunks: () => res as AsyncIterable<string>,
      });
    });
    req.once('error', reject);
    req.end(init.body);
  });
};

async function readAll(res: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of res as AsyncIterable<string>) text += chunk;
  return text;
}
