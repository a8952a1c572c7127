import { describe, expect, it } from 'vitest';
import { matchesBasePath, normalizeBasePath } from '../base-path.ts';
import { requestPath, RouteTable } from './route-table.ts';

describe('route table', () => {
  it('normalises base paths', () => {
    expect(normalizeBasePath('/api/')).toBe('/api');
    expect(normalizeBasePath('api')).toBe('/api');
    expect(normalizeBasePath('')).toBe('/');
    expect(normalizeBasePath('/')).toBe('/');
  });

  it('matches on path-segment boundaries only', () => {
    expect(matchesBasePath('/api', '/api')).toBe(true);
    expect(matchesBasePath('/api/', '/api')).toBe(true);
    expect(matchesBasePath('/api/x', '/api')).toBe(true);
    expect(matchesBasePath('/apix', '/api')).toBe(false);
    expect(matchesBasePath('/anything', '/')).toBe(true);
  });

  it('picks the longest matching base path', () => {
    const table = new RouteTable<string>();
    table.set('root', '/', 'root');
    table.set('api', '/api', 'api');
    table.set('v2', '/api/v2/', 'v2');
    expect(table.match('/api/v2/users')).toBe('v2');
    expect(table.match('/api/v2')).toBe('v2');
    expect(table.match('/api/v2x')).toBe('api');
    expect(table.match('/apix')).toBe('root');
    table.delete('root');
    expect(table.match('/apix')).toBeUndefined();
    expect(table.owner('/api/v2')).toBe('v2');
  });

  it('moves a service when its base path changes', () => {
    const table = new RouteTable<string>();
    table.set('svc', '/old', 'svc');
    table.set('svc', '/new', 'svc');
    expect(table.match('/old/x')).toBeUndefined();
    expect(table.match('/new/x')).toBe('svc');
  });

  it('reads the path of origin-form and absolute-form targets', () => {
    expect(requestPath('/a/b?c=/d')).toBe('/a/b');
    expect(requestPath('http://example.com/a/b?c')).toBe('/a/b');
    expect(requestPath(undefined)).toBe('/');
  });
});
