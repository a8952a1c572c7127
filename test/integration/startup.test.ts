// What `fledge serve` says about its set-up when it starts.
import { afterAll, describe, expect, it } from 'vitest';
import { cleanup, startFledgeProcess } from '../helpers/fledge-process.ts';
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
});
