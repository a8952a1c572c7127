// Hosts: the places tasks run. A host has an id, the address its tasks' ports answer on (health
// checks and the load balancer use it), a capacity, the runtime it offers and attributes (for
// placement). The process runtime is the host `local`; Docker hosts come from --docker-host.
//
// Its state is the operator's (ACTIVE, FROZEN, DECOMMISSIONING, DECOMMISSIONED: persisted, in
// Singularity's words) unless the host does not answer, which reads UNREACHABLE until it does.
import type { Capacity, PortRange } from '../runtimes/ledger.ts';

export type { HostUsage } from '../runtimes/ledger.ts';

export const ADMIN_STATES = ['ACTIVE', 'FROZEN', 'DECOMMISSIONING', 'DECOMMISSIONED'] as const;
export type AdminState = (typeof ADMIN_STATES)[number];
export type HostState = AdminState | 'UNREACHABLE';
export type HostAction = 'activate' | 'freeze' | 'decommission';

export { LOCAL_HOST } from '../core/placement.ts';

export interface HostDefinition {
  id: string;
  kind: 'process' | 'docker';
  /** where the host's tasks answer */
  address: string;
  /** docker: unix:///path or tcp://host:port */
  endpoint?: string;
  portRange: PortRange;
  /** what is configured; docker hosts learn the rest from `docker info` */
  capacity: Partial<Capacity>;
  /** for placement (requiredAgentAttributes, allowedAgentAttributes); `rack` names the host's rack */
  attributes: Record<string, string>;
  /** attributes (also in `attributes`) that reserve the host for the tasks that require or allow them */
  reservedAttributes?: Record<string, string>;
}

/** One change of a host's state (Singularity's SingularityMachineStateHistoryUpdate). */
export interface HostStateUpdate {
  state: AdminState;
  timestamp: number;
  user?: string;
  message?: string;
}

/** What the store keeps per host: written when a host is first seen and on every state change. */
export interface HostRecord {
  id: string;
  firstSeenAt: number;
  current: HostStateUpdate;
  /** newest first, bounded */
  history: HostStateUpdate[];
}
