/*
 * Placement: which host a new task goes to. Pure: it reads host snapshots (what the registry
 * knows of each host, tasks placed but not started yet included) and the request's own tasks.
 *
 * A host may take a task when, in this order (the first rule it breaks is its reason):
 *   1. it runs the task's kind (containers on Docker hosts, processes on `local`);
 *   2. it is ACTIVE and answers (FROZEN, DECOMMISSIONING/ED and UNREACHABLE take nothing new);
 *   3. its rack is in the request's `rackAffinity`, when one is given;
 *   4. it has every `requiredAgentAttributes` entry, and every attribute that reserves it
 *      (`reserved.<k>=<v>`) is among the request's required or allowed attributes;
 *   5. its capacity is known and the task's cpus, memory, port count and literal host ports fit;
 *   6. `rackSensitive`: the rack is not saturated (Singularity's isRackOk, over the racks of
 *      the hosts that take tasks of this kind);
 *   7. `agentPlacement` (Singularity's SingularityAgentAndRackManager.doesOfferMatch):
 *      SEPARATE, SEPARATE_BY_DEPLOY, SPREAD_ALL_*: no task of this deploy on the host (cleaning
 *      ones included); SEPARATE_BY_REQUEST: no task of the request at all; OPTIMISTIC: at most
 *      about the request's tasks-per-host average (times 1 + 0.09 per task waiting for a host);
 *      GREEDY: no rule.
 * Of the hosts that may, it takes the one with the fewest tasks of this deploy (in its rack
 * first, when rackSensitive), then of the request (so instances spread), then one an
 * `allowedAgentAttributes` entry prefers, then the most free cpus and memory after placing,
 * then the first configured.
 */
import { literalHostPorts } from './container.ts';
import { isLive, type AgentPlacement, type Deploy, type FledgeRequest, type TaskRecord } from './model.ts';

/** The process host's id. */
export const LOCAL_HOST = 'local';
/** The host and rack part of a task that no host can take yet. */
export const UNPLACED = 'unplaced';
/** The rack of a host without a `rack` attribute. */
export const DEFAULT_RACK = 'local';
/** Singularity's placementLeniency default. */
const OPTIMISTIC_LENIENCY = 0.09;

export type HostAdminState = 'ACTIVE' | 'FROZEN' | 'DECOMMISSIONING' | 'DECOMMISSIONED';

/** One host as placement sees it. */
export interface HostSnapshot {
  id: string;
  runs: 'process' | 'docker';
  /** the operator's state */
  adminState: HostAdminState;
  /** false once it has not answered for --host-unreachable-seconds */
  reachable: boolean;
  /** why it does not answer */
  lastError?: string;
  rack: string;
  attributes: Readonly<Record<string, string>>;
  /** attributes that reserve the host for the tasks that require or allow them */
  reservedAttributes: Readonly<Record<string, string>>;
  /** undefined until known (a Docker host reports it through `docker info`) */
  capacity?: { cpus: number; memoryMb: number };
  /** why the capacity is not known */
  capacityUnknown?: string;
  /** what is held there: started tasks and tasks placed there but not started yet */
  used: { cpus: number; memoryMb: number; portsInRange: number };
  portRange: { from: number; to: number };
  /** every port held there (literal host ports must be free) */
  heldPorts: ReadonlySet<number>;
}

/** What one task of a deploy needs of a host. */
export interface TaskDemand {
  runs: 'process' | 'docker';
  cpus: number;
  memoryMb: number;
  numPorts: number;
  literalPorts: readonly number[];
}

export function demandOf(deploy: Deploy): TaskDemand {
  const docker = deploy.containerInfo?.type === 'DOCKER' ? deploy.containerInfo.docker : undefined;
  return {
    runs: docker ? 'docker' : 'process',
    cpus: deploy.resources.cpus,
    memoryMb: deploy.resources.memoryMb,
    numPorts: deploy.resources.numPorts,
    literalPorts: docker ? literalHostPorts(docker) : [],
  };
}

/** A live task of the request, where it is. */
export interface PlacedTask {
  deployId: string;
  host: string;
  rack: string;
  cleaning: boolean;
}

export type Placement = { ok: true; host: string; rack: string } | { ok: false; reason: string };

export interface PlacementInput {
  demand: TaskDemand;
  deployId: string;
  request: FledgeRequest;
  /** instances wanted once the deploy is done (rackSensitive divides them over the racks) */
  instances: number;
  placement: AgentPlacement;
  hosts: readonly HostSnapshot[];
  /** the request's live placed tasks */
  tasks: readonly PlacedTask[];
  /** the request's tasks waiting for a host, this one included (OPTIMISTIC's leniency) */
  pending: number;
}

/** Whether a host takes new tasks at all (state and reachability). */
export const takesTasks = (h: Pick<HostSnapshot, 'adminState' | 'reachable'>) => h.adminState === 'ACTIVE' && h.reachable;

/** The host's own refusal (state, rack, attributes), before resources and the request's other tasks. */
export function hostRefusal(h: HostSnapshot, request: FledgeRequest): string | undefined {
  if (!h.reachable) return `host ${h.id} is UNREACHABLE${h.lastError ? ` (${h.lastError})` : ''}`;
  if (h.adminState !== 'ACTIVE') return `host ${h.id} is ${h.adminState} and takes no new tasks`;
  const affinity = request.rackAffinity ?? [];
  if (affinity.length > 0 && !affinity.includes(h.rack)) {
    return `host ${h.id} is in rack ${h.rack}, not in rackAffinity [${affinity.join(', ')}]`;
  }
  const required = request.requiredAgentAttributes ?? {};
  const missing = Object.entries(required).filter(([k, v]) => attribute(h.attributes, k) !== v);
  if (missing.length > 0) {
    const has = missing.filter(([k]) => attribute(h.attributes, k) !== undefined).map(([k]) => `${k}=${attribute(h.attributes, k)}`);
    return `host ${h.id} lacks requiredAgentAttributes ${pairs(missing)}${has.length > 0 ? ` (it has ${has.join(', ')})` : ''}`;
  }
  const reserved = Object.entries(h.reservedAttributes);
  if (reserved.length > 0) {
    const asked = { ...required, ...(request.allowedAgentAttributes ?? {}) };
    if (!reserved.every(([k, v]) => attribute(asked, k) === v)) {
      return `host ${h.id} is reserved for tasks that require or allow ${pairs(reserved)}`;
    }
  }
  return undefined;
}

// Fractional cpus add up in milli-cpus so 0.1 + 0.2 fits in 0.3.
const milli = (cpus: number) => Math.round(cpus * 1000);
const fmtCpus = (m: number) => String(m / 1000);

/** Why `need` does not fit in what is left, or undefined when it does (the runtimes' ledger says the same). */
export function resourceShortfall(
  capacity: { cpus: number; memoryMb: number },
  used: { cpus: number; memoryMb: number; portsInRange: number },
  portRange: { from: number; to: number },
  need: { cpus: number; memoryMb: number; numPorts: number },
): string | undefined {
  const reasons: string[] = [];
  const freeCpus = milli(capacity.cpus) - milli(used.cpus);
  if (milli(need.cpus) > freeCpus) {
    reasons.push(
      `Not enough cpus: needs ${fmtCpus(milli(need.cpus))}, ${fmtCpus(Math.max(0, freeCpus))} free of ${fmtCpus(milli(capacity.cpus))}`,
    );
  }
  const freeMem = capacity.memoryMb - used.memoryMb;
  if (need.memoryMb > freeMem) {
    reasons.push(`Not enough memory: needs ${need.memoryMb} MB, ${Math.max(0, freeMem)} MB free of ${capacity.memoryMb} MB`);
  }
  const freePorts = portRange.to - portRange.from + 1 - used.portsInRange;
  if (need.numPorts > freePorts) reasons.push(portsShort(portRange, need.numPorts, freePorts));
  return reasons.length > 0 ? reasons.join('; ') : undefined;
}

export const portsShort = (range: { from: number; to: number }, needed: number, free: number) =>
  `Not enough ports: needs ${needed}, ${Math.max(0, free)} free in ${range.from}-${range.to}`;

/** What placement counts of the request's tasks, for one deploy: built once, kept up to date. */
interface TaskCounts {
  deployId: string;
  /** the request's live placed tasks, and the hosts they are on (OPTIMISTIC) */
  total: number;
  hosts: Map<string, number>;
  /** per host: the deploy's tasks, its cleaning ones, other deploys' (all), the request's not cleaning */
  onHost: Map<string, { deploy: number; cleaning: number; others: number; active: number }>;
  /** per rack: the deploy's tasks not cleaning */
  perRack: Map<string, number>;
}

function countTasks(tasks: readonly PlacedTask[], deployId: string): TaskCounts {
  const counts: TaskCounts = { deployId, total: 0, hosts: new Map(), onHost: new Map(), perRack: new Map() };
  for (const t of tasks) addTask(counts, t);
  return counts;
}

function addTask(c: TaskCounts, t: PlacedTask): void {
  c.total++;
  c.hosts.set(t.host, (c.hosts.get(t.host) ?? 0) + 1);
  let here = c.onHost.get(t.host);
  if (!here) c.onHost.set(t.host, (here = { deploy: 0, cleaning: 0, others: 0, active: 0 }));
  if (!t.cleaning) here.active++;
  if (t.deployId !== c.deployId) here.others++;
  else if (t.cleaning) here.cleaning++;
  else {
    here.deploy++;
    c.perRack.set(t.rack, (c.perRack.get(t.rack) ?? 0) + 1);
  }
}

const NONE = { deploy: 0, cleaning: 0, others: 0, active: 0 };

/** The placement rule a request's other tasks impose on a host, or undefined when it may take the task. */
function ruleRefusal(input: PlacementInput, counts: TaskCounts, h: HostSnapshot, racks: number): string | undefined {
  const { deployId, placement, request } = input;
  const here = counts.onHost.get(h.id) ?? NONE;
  if (placement === 'GREEDY' && !request.rackSensitive) return undefined;
  if (request.rackSensitive && !rackOk(counts.perRack, h.rack, input.instances, racks)) {
    return `host ${h.id}: rack ${h.rack} already runs ${counts.perRack.get(h.rack) ?? 0} of the deploy's ${input.instances} instance(s) spread over ${racks} rack(s) (rackSensitive)`;
  }
  switch (placement) {
    case 'SEPARATE':
    case 'SEPARATE_BY_DEPLOY':
    case 'SPREAD_ALL_SLAVES':
    case 'SPREAD_ALL_AGENTS':
      if (here.deploy > 0 || here.cleaning > 0)
        return `host ${h.id} already runs a task of deploy ${deployId} (agentPlacement ${placement})`;
      return undefined;
    case 'SEPARATE_BY_REQUEST':
      if (here.deploy > 0 || here.cleaning > 0 || here.others > 0) {
        return `host ${h.id} already runs a task of request ${request.id} (agentPlacement SEPARATE_BY_REQUEST)`;
      }
      return undefined;
    case 'OPTIMISTIC': {
      if (counts.total === 0) return undefined;
      const threshold = (counts.total / counts.hosts.size) * (1 + input.pending * OPTIMISTIC_LENIENCY);
      if (here.deploy <= threshold) return undefined;
      return `host ${h.id} already runs ${here.deploy} task(s) of deploy ${deployId}, above its share of ${Math.round(threshold * 100) / 100} (agentPlacement OPTIMISTIC)`;
    }
    case 'GREEDY':
      return undefined;
  }
}

/** Singularity's isRackOk: the deploy's tasks spread evenly over the racks that take tasks. */
function rackOk(perRack: ReadonlyMap<string, number>, rack: string, instances: number, racks: number): boolean {
  const here = perRack.get(rack) ?? 0;
  const perRackWanted = instances / racks;
  const accounted = [...perRack.values()].filter((n) => n > 0);
  if (accounted.length < racks) return here < Math.max(perRackWanted, 1);
  const least = Math.min(...accounted);
  if (least < Math.floor(perRackWanted)) return here < Math.floor(perRackWanted);
  return here < perRackWanted;
}

/** The host for one task, or why none takes it. */
export function chooseHost(input: PlacementInput): Placement {
  return choose(input, countTasks(input.tasks, input.deployId));
}

function choose(input: PlacementInput, counts: TaskCounts): Placement {
  const { demand, request } = input;
  const kind = input.hosts.filter((h) => h.runs === demand.runs);
  if (kind.length === 0) {
    return {
      ok: false,
      reason: demand.runs === 'docker' ? 'No Docker host is configured (start Fledge with --docker-host)' : 'No host runs processes',
    };
  }
  const racks = new Set(kind.filter(takesTasks).map((h) => h.rack)).size;
  const reasons: string[] = [];
  let best: { h: HostSnapshot; key: number[] } | undefined;
  kind.forEach((h, index) => {
    const refusal = hostRefusal(h, request) ?? fitRefusal(h, demand) ?? ruleRefusal(input, counts, h, racks);
    if (refusal) {
      reasons.push(refusal);
      return;
    }
    const key = rank(input, counts, h, index);
    if (!best || less(key, best.key)) best = { h, key };
  });
  const chosen = best as { h: HostSnapshot } | undefined;
  if (chosen) return { ok: true, host: chosen.h.id, rack: chosen.h.rack };
  return { ok: false, reason: reasons.join('; ') };
}

function fitRefusal(h: HostSnapshot, demand: TaskDemand): string | undefined {
  if (!h.capacity) return `host ${h.id}: capacity unknown${h.capacityUnknown ? ` (${h.capacityUnknown})` : ''}`;
  const short = resourceShortfall(h.capacity, h.used, h.portRange, demand);
  if (short) return `host ${h.id}: ${short}`;
  const taken = demand.literalPorts.filter((p) => h.heldPorts.has(p));
  if (taken.length > 0) return `host ${h.id}: host port(s) ${taken.join(', ')} held by another task`;
  return undefined;
}

/**
 * Smaller is better: (rackSensitive) this deploy's tasks in the rack, this deploy's tasks on
 * the host, the request's, not preferred, the share of cpus and memory used, config order.
 */
function rank(input: PlacementInput, counts: TaskCounts, h: HostSnapshot, index: number): number[] {
  const here = counts.onHost.get(h.id) ?? NONE;
  const inRack = input.request.rackSensitive ? (counts.perRack.get(h.rack) ?? 0) : 0;
  const allowed = Object.entries(input.request.allowedAgentAttributes ?? {});
  const preferred = allowed.some(([k, v]) => attribute(h.attributes, k) === v);
  const cap = h.capacity ?? { cpus: 0, memoryMb: 0 };
  const share = (used: number, need: number, total: number) => (total > 0 ? (used + need) / total : 1);
  const usedShare = (share(h.used.cpus, input.demand.cpus, cap.cpus) + share(h.used.memoryMb, input.demand.memoryMb, cap.memoryMb)) / 2;
  return [inRack, here.deploy, here.active, preferred ? 0 : 1, usedShare, index];
}

function less(a: number[], b: number[]): boolean {
  for (let i = 0; i < a.length; i++) {
    if (a[i]! !== b[i]!) return a[i]! < b[i]!;
  }
  return false;
}

/** An attribute's value: own keys only (a name like `constructor` is no inherited function). */
const attribute = (attributes: Readonly<Record<string, string>>, key: string) =>
  Object.hasOwn(attributes, key) ? attributes[key] : undefined;

const pairs = (entries: [string, string][]) => entries.map(([k, v]) => `${k}=${v}`).join(', ');

// ---- the request's tasks, and several placements in one pass ----------------------------

/** Where a task runs or is to run: its host's id; undefined for a task no host took yet. */
export function hostOf(t: TaskRecord): string | undefined {
  const handleHost = t.handle?.host;
  if (typeof handleHost === 'string') return handleHost;
  if (t.taskId.host === UNPLACED) return undefined;
  // Task records from before placement named every host `localhost`: they ran on local.
  if (t.taskId.host === 'localhost') return t.handle ? LOCAL_HOST : undefined;
  return t.taskId.host;
}

export const isUnplaced = (t: TaskRecord) => t.taskId.host === UNPLACED && t.handle === undefined;

export interface PlacerOptions {
  request: FledgeRequest;
  /** instances wanted once the pending deploy (if any) is done */
  instances: number;
  defaultPlacement: AgentPlacement;
  hosts: readonly HostSnapshot[];
  /** the request's tasks as the step sees them now */
  tasks: readonly TaskRecord[];
  /** whether the snapshots already count a task (persisted ones are; ones created in this step are not) */
  counted: (taskId: string) => boolean;
  /** the deploys tasks may belong to */
  deploys: readonly (Deploy | undefined)[];
}

/**
 * Places tasks one after another in one pass: each placement counts against the hosts for the
 * next. Local to the pure function that made it (a part of the step): nothing is shared.
 */
export class Placer {
  readonly #o: PlacerOptions;
  readonly #hosts: HostSnapshot[];
  readonly #tasks: PlacedTask[] = [];
  readonly #counts = new Map<string, TaskCounts>();
  readonly #unplaced: number;

  constructor(options: PlacerOptions) {
    this.#o = options;
    const demands = new Map(options.deploys.filter((d): d is Deploy => !!d).map((d) => [d.id, demandOf(d)]));
    const extra = new Map<string, TaskDemand[]>();
    let unplaced = 0;
    for (const t of options.tasks) {
      if (!isLive(t.state)) continue;
      const host = hostOf(t);
      if (host === undefined) {
        if (!t.cleanup) unplaced++;
        continue;
      }
      this.#tasks.push({ deployId: t.taskId.deployId, host, rack: t.taskId.rackId, cleaning: !!t.cleanup });
      const demand = demands.get(t.taskId.deployId);
      if (!options.counted(t.taskId.id) && demand) extra.set(host, [...(extra.get(host) ?? []), demand]);
    }
    this.#unplaced = unplaced;
    this.#hosts = options.hosts.map((h) => (extra.has(h.id) ? withDemands(h, extra.get(h.id)!) : h));
  }

  /**
   * The host for a new task of `deploy`, which from now on counts as placed there. `scope`: the
   * request's settings and instance count, when they are not the placer's (the active deploy's
   * tasks during a deploy that changes the request).
   */
  place(deploy: Deploy, scope: { request: FledgeRequest; instances: number } = this.#o): Placement {
    const o = this.#o;
    const demand = demandOf(deploy);
    const placement = resolvePlacement(scope.request, o.defaultPlacement);
    let counts = this.#counts.get(deploy.id);
    if (!counts) this.#counts.set(deploy.id, (counts = countTasks(this.#tasks, deploy.id)));
    const input = {
      demand,
      deployId: deploy.id,
      request: scope.request,
      instances: scope.instances,
      placement,
      hosts: this.#hosts,
      tasks: this.#tasks,
      pending: this.#unplaced + 1,
    };
    const result = choose(input, counts);
    if (result.ok) {
      const i = this.#hosts.findIndex((h) => h.id === result.host);
      this.#hosts[i] = withDemands(this.#hosts[i]!, [demand]);
      const placed = { deployId: deploy.id, host: result.host, rack: result.rack, cleaning: false };
      this.#tasks.push(placed);
      for (const c of this.#counts.values()) addTask(c, placed);
    }
    return result;
  }
}

export const resolvePlacement = (request: FledgeRequest, fallback: AgentPlacement): AgentPlacement => request.agentPlacement ?? fallback;

export const spreadsToAll = (p: AgentPlacement) => p === 'SPREAD_ALL_AGENTS' || p === 'SPREAD_ALL_SLAVES';

/**
 * SPREAD_ALL_AGENTS: one instance per host the request may use — ACTIVE (by the operator; one
 * that merely does not answer still counts, its instance waits for it), of the deploy's kind,
 * in its racks, with its attributes.
 */
export function spreadAllCount(request: FledgeRequest, deploy: Deploy, hosts: readonly HostSnapshot[]): number {
  const runs = demandOf(deploy).runs;
  return hosts.filter((h) => h.runs === runs && h.adminState === 'ACTIVE' && !hostRefusal({ ...h, reachable: true }, request)).length;
}

function withDemands(h: HostSnapshot, demands: readonly TaskDemand[]): HostSnapshot {
  let cpus = h.used.cpus;
  let memoryMb = h.used.memoryMb;
  let portsInRange = h.used.portsInRange;
  let held: Set<number> | undefined;
  for (const d of demands) {
    cpus = (milli(cpus) + milli(d.cpus)) / 1000;
    memoryMb += d.memoryMb;
    portsInRange += d.numPorts + d.literalPorts.filter((p) => p >= h.portRange.from && p <= h.portRange.to).length;
    if (d.literalPorts.length > 0) {
      held ??= new Set(h.heldPorts);
      for (const p of d.literalPorts) held.add(p);
    }
  }
  return { ...h, used: { cpus, memoryMb, portsInRange }, heldPorts: held ?? h.heldPorts };
}
