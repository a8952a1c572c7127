// --webhook-allow: which webhook targets the operator allows (host names, addresses, CIDR
// ranges); empty allows any. Checked when a webhook is created.
import { BlockList, isIP } from 'node:net';

export function isAllowEntry(entry: string): boolean {
  const [address = '', prefix, ...rest] = entry.split('/');
  if (rest.length > 0) return false;
  if (prefix === undefined) return isIP(address) !== 0 || /^[A-Za-z0-9.-]+$/.test(address);
  const family = isIP(address);
  return family !== 0 && /^\d+$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128);
}

/** A check of a webhook URL's host against the allowed entries. */
export function webhookAllowList(entries: readonly string[]): (uri: URL) => boolean {
  if (entries.length === 0) return () => true;
  const ranges = new BlockList();
  const names = new Set<string>();
  for (const entry of entries) {
    const [address = '', prefix] = entry.split('/');
    const family = isIP(address);
    if (family === 0) names.add(address.toLowerCase());
    else if (prefix === undefined) ranges.addAddress(address, family === 4 ? 'ipv4' : 'ipv6');
    else ranges.addSubnet(address, Number(prefix), family === 4 ? 'ipv4' : 'ipv6');
  }
  return (uri) => {
    const host = uri.hostname.replace(/^\[|\]$/g, '').toLowerCase();
    const family = isIP(host);
    return family === 0 ? names.has(host) : ranges.check(host, family === 4 ? 'ipv4' : 'ipv6');
  };
}
