// Whether a port can be handed to a task: not held by a live task (the ledger knows) and not
// bound by anything else on this machine (only a bind attempt knows).
import { readFileSync } from 'node:fs';
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

/**
 * The part of `range` inside the kernel's ephemeral port range, if any: ports there may be taken
 * at any moment by an outgoing connection of any process, between a probe and the task's bind.
 */
export function ephemeralOverlap(
  range: { from: number; to: number },
  file = '/proc/sys/net/ipv4/ip_local_port_range',
): { from: number; to: number; ephemeral: { from: number; to: number } } | undefined {
  let ephemeral: { from: number; to: number };
  try {
    const [from, to] = readFileSync(file, 'utf8').trim().split(/\s+/).map(Number);
    if (!from || !to) return undefined;
    ephemeral = { from, to };
  } catch {
    return undefined;
  }
  const from = Math.max(range.from, ephemeral.from);
  const to = Math.min(range.to, ephemeral.to);
  return from <= to ? { from, to, ephemeral } : undefined;
}
