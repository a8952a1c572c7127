// Address helpers shared by the config, the API's guard and the built-in proxy.
import { BlockList, isIP } from 'node:net';

/** `[::1]:7099` → `::1`, `Example.com:80` → `example.com`; the host part of a Host header. */
export function hostnameOf(hostHeader: string): string {
  const h = hostHeader.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end === -1 ? h : h.slice(1, end);
  }
  const colon = h.indexOf(':');
  // more than one colon: a bare IPv6 address without brackets
  if (colon !== -1 && h.indexOf(':', colon + 1) === -1) return h.slice(0, colon);
  return h.replace(/\.$/, '');
}

/** An address that only this machine can reach: `localhost`, 127.0.0.0/8, ::1. */
export function isLoopbackHost(host: string): boolean {
  const h = hostnameOf(host);
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || /^::ffff:127\./.test(h) || /^(0+:){7}0*1$/.test(h);
  return false;
}

export function isWildcardHost(host: string): boolean {
  const h = hostnameOf(host);
  return h === '0.0.0.0' || h === '::' || h === '';
}

/** `::ffff:10.0.0.1` (an IPv4 client on a dual-stack socket) → `10.0.0.1`. */
export function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/** Addresses and CIDR ranges (`10.0.0.0/8`, `::1`) whose X-Forwarded-* headers are believed. */
export class TrustList {
  readonly #list = new BlockList();
  readonly entries: readonly string[];

  constructor(entries: readonly string[]) {
    this.entries = entries;
    for (const entry of entries) {
      const parsed = parseAddressRange(entry);
      if (!parsed) throw new Error(`not an IP address or CIDR range: ${entry}`);
      if (parsed.prefix === undefined) this.#list.addAddress(parsed.address, parsed.family);
      else this.#list.addSubnet(parsed.address, parsed.prefix, parsed.family);
    }
  }

  get empty(): boolean {
    return this.entries.length === 0;
  }

  trusts(address: string | undefined): boolean {
    if (!address || this.entries.length === 0) return false;
    const plain = plainAddress(address);
    const family = isIP(plain);
    if (family === 0) return false;
    return this.#list.check(plain, family === 4 ? 'ipv4' : 'ipv6');
  }
}

/** `10.0.0.0/8` or `::1`, checked; undefined when it is neither an address nor a range. */
export function parseAddressRange(entry: string): { address: string; family: 'ipv4' | 'ipv6'; prefix?: number } | undefined {
  const [address = '', prefixText, ...rest] = entry.trim().split('/');
  if (rest.length > 0) return undefined;
  const version = isIP(address);
  if (version === 0) return undefined;
  const family = version === 4 ? 'ipv4' : 'ipv6';
  if (prefixText === undefined) return { address, family };
  const prefix = Number(prefixText);
  if (!/^\d+$/.test(prefixText) || prefix > (version === 4 ? 32 : 128)) return undefined;
  return { address, family, prefix };
}
