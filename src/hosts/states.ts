// The operator's host state machine, Singularity's rules (AbstractMachineManager): pure.
//   activate      any state but ACTIVE → ACTIVE
//   freeze        ACTIVE → FROZEN (no new tasks; running ones stay)
//   decommission  ACTIVE | FROZEN → DECOMMISSIONING (no new tasks), then DECOMMISSIONED once
//                 the host runs nothing (moving its tasks away is placement's job, part 2)
// A change to the state the host is in, or out of a decommission into FROZEN, is a conflict.
import type { AdminState, HostAction } from './types.ts';

export type Transition = { ok: true; next: AdminState } | { ok: false; reason: string };

const TARGET: Record<HostAction, AdminState> = { activate: 'ACTIVE', freeze: 'FROZEN', decommission: 'DECOMMISSIONING' };

export function transition(current: AdminState, action: HostAction): Transition {
  const next = TARGET[action];
  const decommissioning = current === 'DECOMMISSIONING' || current === 'DECOMMISSIONED';
  if (current === next) return { ok: false, reason: `is ${current} already` };
  if (action === 'decommission' && decommissioning) return { ok: false, reason: `is ${current} already` };
  if (action === 'freeze' && decommissioning) return { ok: false, reason: `is ${current}: activate it before freezing it` };
  return { ok: true, next };
}

/** Whether a host in this state takes new tasks. */
export const takesTasks = (state: AdminState) => state === 'ACTIVE';
