// --docker-host id=<name>,endpoint=<unix:///path | tcp://addr:port>[,address=<addr>]
//   [,ports=<from>-<to>][,cpus=N][,memory-mb=N][,rack=<rack>][,attr.<key>=<value>...]
//   [,reserved.<key>=<value>...]
// → a HostDefinition. Pure; errors name the host and the key. `rack=r1` is `attr.rack=r1`;
// `reserved.gpu=yes` is the attribute gpu=yes that also reserves the host for the tasks whose
// request requires or allows gpu=yes (Singularity's reserveAgentsWithAttributes).
import { UNPLACED } from '../core/placement.ts';
import { LOCAL_HOST, type HostDefinition } from './types.ts';

const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const KEYS = new Set(['id', 'endpoint', 'address', 'ports', 'cpus', 'memory-mb', 'rack']);
const NAME = /^[A-Za-z0-9_.-]+$/;

export class HostConfigError extends Error {}

export function parseDockerHost(spec: string, defaults: { portRange: { from: number; to: number } }): HostDefinition {
  const fields = new Map<string, string>();
  const attributes: Record<string, string> = {};
  const reservedAttributes: Record<string, string> = {};
  for (const part of spec.split(',')) {
    const item = part.trim();
    if (item === '') continue;
    const eq = item.indexOf('=');
    if (eq <= 0) throw new HostConfigError(`"${item}" is not key=value`);
    const key = item.slice(0, eq).trim();
    const value = item.slice(eq + 1).trim();
    const prefix = key.startsWith('attr.') ? 'attr.' : key.startsWith('reserved.') ? 'reserved.' : undefined;
    if (prefix) {
      const name = key.slice(prefix.length);
      if (!NAME.test(name)) throw new HostConfigError(`attribute name "${name}" must be [A-Za-z0-9_.-]`);
      if (attributes[name] !== undefined && attributes[name] !== value)
        throw new HostConfigError(`attribute "${name}" is given twice with different values`);
      attributes[name] = value;
      if (prefix === 'reserved.') reservedAttributes[name] = value;
      continue;
    }
    if (!KEYS.has(key)) throw new HostConfigError(`unknown key "${key}" (known: ${[...KEYS].join(', ')}, attr.<name>)`);
    if (fields.has(key)) throw new HostConfigError(`"${key}" is given twice`);
    fields.set(key, value);
  }
  const id = fields.get('id');
  if (!id) throw new HostConfigError('id=<name> is required');
  const where = `host ${id}`;
  if (!ID.test(id)) throw new HostConfigError(`${where}: id must be 1-63 characters of [A-Za-z0-9_.-]`);
  if (id === LOCAL_HOST) throw new HostConfigError(`${where}: "${LOCAL_HOST}" is the process host's id`);
  if (id === UNPLACED) throw new HostConfigError(`${where}: "${UNPLACED}" names tasks no host took yet`);
  const rack = fields.get('rack');
  if (rack !== undefined) {
    if (!NAME.test(rack)) throw new HostConfigError(`${where}: rack must be [A-Za-z0-9_.-] (got ${rack})`);
    if (attributes.rack !== undefined && attributes.rack !== rack)
      throw new HostConfigError(`${where}: rack=${rack} and attr.rack=${attributes.rack} disagree`);
    attributes.rack = rack;
  }
  const endpoint = fields.get('endpoint');
  if (!endpoint) throw new HostConfigError(`${where}: endpoint=<unix:///path or tcp://addr:port> is required`);
  let defaultAddress: string;
  if (endpoint.startsWith('unix:///')) defaultAddress = '127.0.0.1';
  else if (/^tcp:\/\/[^/]+:\d+$/.test(endpoint))
    defaultAddress = new URL(`http://${endpoint.slice('tcp://'.length)}`).hostname.replace(/^\[(.*)\]$/, '$1');
  else throw new HostConfigError(`${where}: endpoint must be unix:///path or tcp://addr:port (got ${endpoint})`);
  const address = fields.get('address') || defaultAddress;
  if (!/^[A-Za-z0-9.:_-]+$/.test(address)) throw new HostConfigError(`${where}: address "${address}" is not a host name or IP address`);

  let portRange = defaults.portRange;
  const ports = fields.get('ports');
  if (ports !== undefined) {
    const m = /^(\d+)-(\d+)$/.exec(ports);
    const from = Number(m?.[1]);
    const to = Number(m?.[2]);
    if (!m || from < 1024 || to > 65535 || from > to)
      throw new HostConfigError(`${where}: ports must be <from>-<to> within 1024-65535 (got ${ports})`);
    portRange = { from, to };
  }
  const capacity: HostDefinition['capacity'] = {};
  const cpus = fields.get('cpus');
  if (cpus !== undefined) {
    const n = Number(cpus);
    if (!Number.isFinite(n) || n <= 0) throw new HostConfigError(`${where}: cpus must be a number > 0 (got ${cpus})`);
    capacity.cpus = n;
  }
  const memory = fields.get('memory-mb');
  if (memory !== undefined) {
    const n = Number(memory);
    if (!Number.isInteger(n) || n <= 0) throw new HostConfigError(`${where}: memory-mb must be an integer > 0 (got ${memory})`);
    capacity.memoryMb = n;
  }
  return { id, kind: 'docker', address, endpoint, portRange, capacity, attributes, reservedAttributes };
}

const sameMachine = (a: string) => (a === 'localhost' || a === '0.0.0.0' || a === '::1' ? '127.0.0.1' : a);

/**
 * Hosts whose tasks answer on the same address must not hand out the same ports: the second
 * task to bind one would fail. Returns the first clash, described.
 */
export function portClash(hosts: Pick<HostDefinition, 'id' | 'address' | 'portRange'>[]): string | undefined {
  for (let i = 0; i < hosts.length; i++) {
    for (let j = i + 1; j < hosts.length; j++) {
      const a = hosts[i]!;
      const b = hosts[j]!;
      if (sameMachine(a.address) !== sameMachine(b.address)) continue;
      if (a.portRange.from <= b.portRange.to && b.portRange.from <= a.portRange.to) {
        return (
          `hosts ${a.id} and ${b.id} both answer on ${b.address} and share ports ` +
          `${Math.max(a.portRange.from, b.portRange.from)}-${Math.min(a.portRange.to, b.portRange.to)}: give ${b.id} its own range (ports=<from>-<to>)`
        );
      }
    }
  }
  return undefined;
}
