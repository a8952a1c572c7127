// The load balancer: asynchronous operations keyed by ids Fledge chooses.
// One interface, one folder per implementation (builtin/, haproxy/, fake/), one contract suite.
import type { RoutingRules } from '../core/model.ts';
import type { ServiceTraffic, TrafficTotal, TrafficWindow } from './traffic.ts';

export type { ServiceTraffic, TrafficTotal, TrafficWindow } from './traffic.ts';

export type LbOperationState = 'WAITING' | 'SUCCESS' | 'FAILED' | 'CANCELED';

export interface Upstream {
  /** Fledge's task id; an upstream's identity within a service */
  taskId: string;
  host: string;
  port: number;
  group?: string;
  /** the deploy the task belongs to: traffic is counted per deploy (version) too */
  deployId?: string;
  /**
   * Relative weight (HAProxy's semantics): an integer 0..MAX_UPSTREAM_WEIGHT, absent =
   * DEFAULT_UPSTREAM_WEIGHT. An upstream gets weight / (sum of the weights in rotation) of the
   * new requests; 0 keeps it in rotation (in-flight requests finish) with no new requests.
   */
  weight?: number;
}

/** The weight of an upstream that does not say: every balancer's normal weight. */
export const DEFAULT_UPSTREAM_WEIGHT = 100;
export const MAX_UPSTREAM_WEIGHT = 256;

export function upstreamWeight(u: Upstream): number {
  return u.weight ?? DEFAULT_UPSTREAM_WEIGHT;
}

export interface LbService {
  /** request id (or loadBalancerServiceIdOverride) */
  serviceId: string;
  /** path prefix routed to this service, longest match wins */
  basePath: string;
  groups: string[];
  options?: Record<string, unknown>;
  /**
   * While a deploy with routing is pending: which requests go to its upstreams whatever the
   * split (routing.ts decides, the same way in every balancer). Each operation carries the
   * service's whole routing: absent clears it, in the same operation.
   */
  routing?: LbRouting;
}

/** RoutingRules for one deploy: `deployId` is the version rules and cohorts send to. */
export interface LbRouting extends RoutingRules {
  /** the pending (new) deploy */
  deployId: string;
}

export interface LbOperationStatus {
  operationId: string;
  state: LbOperationState;
  message?: string;
  /** the service the operation changed, when the balancer knows it */
  serviceId?: string;
}

/**
 * Passive protection: the balancer took an upstream out of rotation for a short back-off after
 * connection failures in a row (refused, reset, timed out), or put it back. Health verdicts stay
 * Fledge's: the engine probes the task at once, and only a failed health check removes it.
 */
export interface UpstreamEvent {
  kind: 'EJECTED' | 'RESTORED';
  serviceId: string;
  taskId: string;
  /** failures in a row that led to it, and the last one */
  failures: number;
  reason: string;
  /** EJECTED: back in rotation at the earliest then (epoch ms), after this back-off */
  until?: number;
  backoffMs?: number;
}

export interface UpstreamStats extends Upstream {
  /** false while draining: no new requests, in-flight ones finish */
  inRotation: boolean;
  inFlight: number;
  /** requests sent to this upstream since it was added */
  total: number;
  /** out of rotation after failures in a row until then (epoch ms) */
  ejectedUntil?: number;
}

export interface ServiceStats {
  basePath: string;
  upstreams: UpstreamStats[];
}

/** Per service id. */
export type BalancerStats = Record<string, ServiceStats>;

export interface Balancer {
  /**
   * Start an operation that adds and removes upstreams of one service. Re-applying an id
   * returns the state of the first application and changes nothing. Adding an upstream
   * already present and removing an unknown one succeed without change — except for its
   * weight: an upstream added again takes the weight the operation gives it (absent: the
   * default), at once, so one operation re-weighs any number of upstreams. Removal drains: new
   * requests go elsewhere at once, in-flight ones finish (bounded by the drain timeout), then
   * the operation reports SUCCESS.
   */
  apply(operationId: string, service: LbService, add: Upstream[], remove: Upstream[]): Promise<LbOperationStatus>;
  /** undefined for an id this balancer does not know (never applied, or forgotten on restart). */
  state(operationId: string): Promise<LbOperationStatus | undefined>;
  /**
   * Cancel a WAITING operation: it becomes CANCELED and its not-yet-done changes are reverted
   * (upstreams still draining go back into rotation). Idempotent; an operation that already
   * finished keeps its state. undefined for an unknown id.
   */
  cancel(operationId: string): Promise<LbOperationStatus | undefined>;
  /** The upstreams of a service currently in rotation (draining ones are not). */
  upstreams(serviceId: string): Promise<Upstream[]>;
  /**
   * Called whenever an operation changes state (including when it is created), so the loop
   * wakes at once. Returns a function that unsubscribes.
   */
  onChange(listener: (status: LbOperationStatus) => void): () => void;
  /** Upstreams taken out of rotation (or put back) after failures in a row; returns an unsubscribe. */
  onUpstreamEvent?(listener: (event: UpstreamEvent) => void): () => void;
  /** Per-service upstreams with request counts, for tests and metrics (optional). */
  stats?(): BalancerStats;
  /**
   * What the service's requests did in the last `window.windowMs` (at most traffic.ts
   * MAX_WINDOW_MS), per deploy and per task, counted by the balancer itself: requests,
   * responses by status class, upstream errors, a latency histogram; with `stepMs`, also as a
   * series. A service without traffic (or unknown) answers zero counts.
   */
  traffic(serviceId: string, window: TrafficWindow): Promise<ServiceTraffic>;
  /** Cumulative counts per upstream since the balancer started (Prometheus counters). */
  trafficTotals(): TrafficTotal[];
  close(): Promise<void>;
}
