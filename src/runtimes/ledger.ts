// Capacity and port bookkeeping shared by the runtimes: what each live task holds, and why a
// new one does not fit. Pure and synchronous, so a reservation is atomic within one start().
import { portsShort, resourceShortfall } from '../core/placement.ts';

export interface Capacity {
  cpus: number;
  memoryMb: number;
}

export interface PortRange {
  from: number;
  to: number;
}

/** What a host's runtime tells about the resources it holds. */
export interface HostUsage {
  cpus: number;
  memoryMb: number;
  ports: number;
  /** ports held inside the host's range */
  portsInRange: number;
  /** every port held (a read-only view) */
  heldPorts: ReadonlySet<number>;
  /** the tasks holding a reservation (a read-only view) */
  tasks: ReadonlySet<string>;
}

export interface Reservation {
  cpus: number;
  memoryMb: number;
  ports: number[];
}

// Fractional cpus add up in milli-cpus so 0.1 + 0.2 fits in 0.3.
const milli = (cpus: number) => Math.round(cpus * 1000);

export class ResourceLedger {
  readonly #held = new Map<string, Reservation>();
  readonly #ids = new Set<string>();
  readonly #ports = new Set<number>();
  // Totals kept as reservations come and go: placement reads them for every request it
  // reconciles, and a sum over every task there made a pass grow with the square of the fleet.
  #cpusMilli = 0;
  #memoryMb = 0;
  #portsInRange = 0;

  constructor(
    public capacity: Capacity,
    readonly portRange: PortRange,
  ) {}

  /** Ids of the tasks holding a reservation (a read-only view). */
  taskIds(): ReadonlySet<string> {
    return this.#ids;
  }

  /** Ports held now. */
  portsInUse(): number {
    return this.#ports.size;
  }

  has(taskId: string): boolean {
    return this.#held.has(taskId);
  }

  get(taskId: string): Reservation | undefined {
    return this.#held.get(taskId);
  }

  portInUse(port: number): boolean {
    return this.#ports.has(port);
  }

  used(): Capacity {
    return { cpus: this.#cpusMilli / 1000, memoryMb: this.#memoryMb };
  }

  /** Why cpus/memory/ports do not fit now, or undefined when they do. Ports are counted, not probed. */
  shortfall(need: { cpus: number; memoryMb: number; numPorts: number }): string | undefined {
    return resourceShortfall(this.capacity, { ...this.used(), portsInRange: this.portsInRange() }, this.portRange, need);
  }

  /** Ports held inside the range (literal ports a container binds outside it do not use it up). */
  portsInRange(): number {
    return this.#portsInRange;
  }

  #inRange(port: number): boolean {
    return port >= this.portRange.from && port <= this.portRange.to;
  }

  /** Every port held now (a read-only view). */
  heldPorts(): ReadonlySet<number> {
    return this.#ports;
  }

  portsShort(needed: number, free: number): string {
    return portsShort(this.portRange, needed, free);
  }

  /** Record what a task holds; replaces an earlier reservation of the same task. */
  reserve(taskId: string, reservation: Reservation): void {
    this.release(taskId);
    this.#held.set(taskId, { ...reservation, ports: [...reservation.ports] });
    this.#ids.add(taskId);
    this.#cpusMilli += milli(reservation.cpus);
    this.#memoryMb += reservation.memoryMb;
    for (const p of reservation.ports) {
      if (!this.#ports.has(p) && this.#inRange(p)) this.#portsInRange++;
      this.#ports.add(p);
    }
  }

  release(taskId: string): void {
    const r = this.#held.get(taskId);
    if (!r) return;
    this.#held.delete(taskId);
    this.#ids.delete(taskId);
    this.#cpusMilli -= milli(r.cpus);
    this.#memoryMb -= r.memoryMb;
    for (const p of r.ports) {
      if (this.#ports.delete(p) && this.#inRange(p)) this.#portsInRange--;
    }
  }
}
