// A tiny HTTP service for the walkthrough and the tests: answers on $PORT, /health is 200.
// VERSION (env) is echoed so a deploy's effect is visible; STARTUP_DELAY_MS delays listening;
// LISTEN_HOST is the address it binds (default 127.0.0.1; 0.0.0.0 in a BRIDGE container).
// A path containing /status/<code> answers that status, /delay/<ms> answers that much later,
// and ERROR_RATE (0..1) makes that share of answers a 500: enough to try a canary's signals.
import { createServer } from 'node:http';

const port = Number(process.env.PORT ?? 8080);
const version = process.env.VERSION ?? 'v1';
const host = process.env.LISTEN_HOST ?? '127.0.0.1';
const errorRate = Number(process.env.ERROR_RATE ?? 0);
const server = createServer((req, res) => {
  if (req.url === '/health') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok\n');
    return;
  }
  const url = req.url ?? '/';
  const named = Number(/\/status\/(\d{3})(?:\/|$|\?)/.exec(url)?.[1] ?? 0);
  const status = named >= 100 && named <= 599 ? named : Math.random() < errorRate ? 500 : 200;
  const delay = Math.min(60_000, Number(/\/delay\/(\d+)(?:\/|$|\?)/.exec(url)?.[1] ?? 0));
  setTimeout(() => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ version, task: process.env.TASK_ID, instance: process.env.INSTANCE_NO, path: url }) + '\n');
  }, delay);
});
setTimeout(
  () => server.listen(port, host, () => console.log(`listening on ${port} (${version})`)),
  Number(process.env.STARTUP_DELAY_MS ?? 0),
);
process.on('SIGTERM', () => server.close(() => process.exit(0)));
