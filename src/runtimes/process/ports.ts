// Whether a port can be handed to a task: not held by a live task (the ledger knows) and not
// bound by anything else on this machine (only a bind attempt knows).
import net from 'node:net';

function canBind(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/**
 * Probe the task's host and, when that is a specific address, the wildcard too: a task that
 * listens on 0.0.0.0 collides with a socket bound to any address, not only 127.0.0.1.
 */
export async function portIsFree(host: string, port: number): Promise<boolean> {
  if (!(await canBind(host, port))) return false;
  return host === '0.0.0.0' || host === '::' ? true : canBind('0.0.0.0', port);
}
