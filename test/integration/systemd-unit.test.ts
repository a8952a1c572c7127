// docs/fledge.service is a unit systemd accepts, with the settings that keep tasks alive
// across a stop or restart of Fledge (docs/operations.md).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FLEDGE_BIN, REPO_ROOT } from '../helpers/fledge-process.ts';

const UNIT = readFileSync(path.join(REPO_ROOT, 'docs', 'fledge.service'), 'utf8');
const settings = (section: string) => {
  const body = UNIT.split(/^\[/m).find((s) => s.startsWith(`${section}]`)) ?? '';
  return body
    .split('\n')
    .filter((l) => /^\w+=/.test(l))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const);
};

describe('the systemd unit in docs/', () => {
  it('stops only the main process, delegates the task cgroups and keeps the data dir private', () => {
    const service = new Map(settings('Service'));
    expect(service.get('KillMode')).toBe('process');
    expect(service.get('Delegate')).toBe('yes');
    expect(service.get('UMask')).toBe('0077');
    expect(service.get('ExecStart')).toMatch(/ serve --data-dir \/var\/lib\/fledge$/);
    expect(UNIT).toContain('WantedBy=multi-user.target');
  });

  it('passes systemd-analyze verify (with ExecStart pointing at this checkout)', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'fledge-unit-'));
    try {
      const file = path.join(dir, 'fledge.service');
      // verify checks that the command exists: point it at this checkout's CLI
      writeFileSync(file, UNIT.replace(/^ExecStart=\S+/m, `ExecStart=${process.execPath} ${FLEDGE_BIN}`));
      const res = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8', timeout: 30_000 });
      expect(res.error, 'systemd-analyze (apt: systemd) must be installed').toBeUndefined();
      const complaints = `${res.stderr}`
        .split('\n')
        // a build machine has no `fledge` user and may not run systemd itself: not the unit's fault
        .filter((l) => l.trim() !== '' && !/user|group|bus|Failed to connect|Documentation|taint/i.test(l));
      expect(complaints).toEqual([]);
      expect(res.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
