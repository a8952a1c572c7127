// What `fledge serve` says about its set-up when it starts.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { cleanup, startFledgeProcess, tempDataDir } from '../helpers/fledge-process.ts';
import { ephemeralRange } from '../helpers/ports.ts';
import { waitFor } from '../helpers/wait-for.ts';

afterAll(cleanup);

describe('fledge serve start-up', () => {
  it('warns when the task port range overlaps the kernel ephemeral range', async () => {
    const ephemeral = ephemeralRange();
    // no task runs here: the range is only checked, never bound
    const fledge = await startFledgeProcess({ portRange: { from: ephemeral.from, to: ephemeral.from + 9 } });
    await waitFor(() => fledge.output().includes('fledge is serving'), { message: 'the serving line' });
    expect(fledge.output()).toContain(`inside the kernel's ephemeral port range`);
    expect(fledge.output()).toContain(`choose --port-range-from/--port-range-to outside ${ephemeral.from}-${ephemeral.to}`);
  });

  it('says loudly when it creates a new, empty state, where, and names other state near by; logs JSON when not on a terminal', async () => {
    const parent = tempDataDir();
    // an earlier installation's data dir beside the new one
    mkdirSync(path.join(parent, '.fledge'));
    writeFileSync(path.join(parent, '.fledge', 'fledge.db'), '');
    const dataDir = path.join(parent, 'new-data');
    const fledge = await startFledgeProcess({ dataDir });
    await waitFor(() => fledge.output().includes('fledge is serving'), { message: 'the serving line' });
    const line = fledge
      .output()
      .split('\n')
      .find((l) => l.includes('NEW, EMPTY STATE'));
    expect(line).toBeDefined();
    const rec = JSON.parse(line!) as { level: number; file: string; otherState: string[] };
    expect(rec.level).toBe(40);
    expect(rec.file).toBe(path.join(dataDir, 'fledge.db'));
    expect(rec.otherState).toEqual([path.join(parent, '.fledge', 'fledge.db')]);
    fledge.kill('SIGTERM');
    await fledge.waitExit();

    // the second start finds its state: no warning
    const again = await startFledgeProcess({ dataDir, args: ['--log-format', 'pretty'] });
    await waitFor(() => again.output().includes('fledge is serving'), { message: 'the serving line' });
    expect(again.output()).not.toContain('NEW, EMPTY STATE');
    expect(again.output()).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO {2}fledge is serving/m);
  });
});
