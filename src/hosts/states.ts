// The operator's host state machine, Singularity's rules (AbstractMachineManager): pure.
//   activate      any state but ACTIVE → ACTIVE
//   freeze        ACTIVE → FROZEN (no new tasks; running ones stay)
//   decommission  ACTIVE | FROZEN → DECOMMISSIONING (no new tasks; the engine moves its tasks
//                 elsewhere, replacements first), then DECOMMISSIONED once the host runs nothing
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
