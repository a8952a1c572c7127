// The load balancer: asynchronous operations keyed by ids Fledge chooses.
// One interface, one folder per implementation (builtin/, haproxy/, fake/), one contract suite.

export type LbOperationState = 'WAITING' | 'SUCCESS' | 'FAILED' | 'CANCELED';

export interface Upstream {
  /** Fledge's task id */
  taskId: string;
  host: string;
  port: number;
  group?: string;
}

export interface LbService {
  /** request id (or loadBalancerServiceIdOverride) */
  serviceId: string;
  /** path prefix routed to this service, longest match wins */
  basePath: string;
  groups: string[];
  options?: Record<string, unknown>;
}

export interface LbOperationStatus {
  operationId: string;
  state: LbOperationState;
  message?: string;
}

export interface Balancer {
  /**
   * Start an operation that adds and removes upstreams of one service. Re-applying an id
   * returns the state of the first application and changes nothing. Removing an unknown
   * upstream succeeds. Removal drains: new requests go elsewhere at once, in-flight ones
   * finish (bounded by the drain timeout), then the operation reports SUCCESS.
   */
  apply(operationId: string, service: LbService, add: Upstream[], remove: Upstream[]): Promise<LbOperationStatus>;
  state(operationId: string): Promise<LbOperationStatus | undefined>;
  /** Cancel a WAITING operation (its changes are reverted where possible). Idempotent. */
  cancel(operationId: string): Promise<LbOperationStatus | undefined>;
  upstreams(serviceId: string): Promise<Upstream[]>;
  /** Called whenever an operation changes state, so the loop wakes at once. */
  onChange(listener: (status: LbOperationStatus) => void): void;
  close(): Promise<void>;
}
