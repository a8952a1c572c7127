import { describe, expect, it } from 'vitest';
import { engineDeploy, testHost, testObservation, testRecord, testRequest } from '../../../test/helpers/engine-values.ts';
import type { AgentPlacement, RequestRecord } from '../model.ts';
import { spreadToAllHosts } from './spread-all.ts';

const v1 = engineDeploy('v1');
const hosts = [testHost('local'), testHost('local2', { runs: 'process' }), testHost('local3', { runs: 'process', adminState: 'FROZEN' })];

function run(placement: AgentPlacement | undefined, more: { record?: Partial<RequestRecord>; pending?: boolean; instances?: number } = {}) {
  const request = testRequest(more.instances ?? 5, placement ? { agentPlacement: placement } : {});
  const obs = testObservation({ request, activeDeploy: v1, hosts });
  return spreadToAllHosts(obs, testRecord(request, more.record), v1, more.pending ? {} : undefined).record.request.instances;
}

describe('spreadToAllHosts', () => {
  it.each([
    ['SPREAD_ALL_AGENTS follows the ACTIVE hosts of the kind', 'SPREAD_ALL_AGENTS' as const, {}, 2],
    ['SPREAD_ALL_SLAVES too', 'SPREAD_ALL_SLAVES' as const, {}, 2],
    ['other placements keep their count', 'SEPARATE' as const, {}, 5],
    ['no placement: the default (GREEDY) keeps it', undefined, {}, 5],
    ['not while a deploy is pending', 'SPREAD_ALL_AGENTS' as const, { pending: true }, 5],
    ['not for a paused request', 'SPREAD_ALL_AGENTS' as const, { record: { state: 'PAUSED' as const } }, 5],
    ['already right: unchanged', 'SPREAD_ALL_AGENTS' as const, { instances: 2 }, 2],
  ])('%s', (_name, placement, more, instances) => {
    expect(run(placement, more)).toBe(instances);
  });
});
