// A tiny HTTP service for the walkthrough and the tests: answers on $PORT, /health is 200.
// VERSION (env) is echoed so a deploy's effect is visible; STARTUP_DELAY_MS delays listening;
// LISTEN_HOST is the address it binds (default 127.0.0.1; 0.0.0.0 in a BRIDGE container).
import { createServer } from 'node:http';

const port = Number(process.env.PORT ?? 8080);
const version = process.env.VERSION ?? 'v1';
const host = process.env.LISTEN_HOST ?? '127.0.0.1';
const server = createServer((req, res) => {
  if (req.url === '/health') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok\n');
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ version, task: process.env.TASK_ID, instance: process.env.INSTANCE_NO, path: req.url }) + '\n');
});
setTimeout(
  () => server.listen(port, host, () => console.log(`listening on ${port} (${version})`)),
  Number(process.env.STARTUP_DELAY_MS ?? 0),
);
process.on('SIGTERM', () => server.close(() => process.exit(0)));
