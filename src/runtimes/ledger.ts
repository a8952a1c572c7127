// Capacity and port bookkeeping shared by the runtimes: what each live task holds, and why a
// new one does not fit. Pure and synchronous, so a reservation is atomic within one start().

export interface Capacity {
  cpus: number;
  memoryMb: number;
}

export interface PortRange {
  from: number;
  to: number;
}

export interface Reservation {
  cpus: number;
  memoryMb: number;
  ports: number[];
}

// Fractional cpus add up in milli-cpus so 0.1 + 0.2 fits in 0.3.
const milli = (cpus: number) => Math.round(cpus * 1000);
const fmtCpus = (m: number) => String(m / 1000);

export class ResourceLedger {
  readonly #held = new Map<string, Reservation>();
  readonly #ports = new Set<number>();

  constructor(
    public capacity: Capacity,
    readonly portRange: PortRange,
  ) {}

  /** Ids of the tasks holding a reservation. */
  taskIds(): string[] {
    return [...this.#held.keys()];
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
    let cpus = 0;
    let memoryMb = 0;
    for (const r of this.#held.values()) {
      cpus += milli(r.cpus);
      memoryMb += r.memoryMb;
    }
    return { cpus: cpus / 1000, memoryMb };
  }

  /** Why cpus/memory/ports do not fit now, or undefined when they do. Ports are counted, not probed. */
  shortfall(need: { cpus: number; memoryMb: number; numPorts: number }): string | undefined {
    const used = this.used();
    const reasons: string[] = [];
    const freeCpus = milli(this.capacity.cpus) - milli(used.cpus);
    if (milli(need.cpus) > freeCpus) {
      reasons.push(
        `Not enough cpus: needs ${fmtCpus(milli(need.cpus))}, ${fmtCpus(Math.max(0, freeCpus))} free of ${fmtCpus(milli(this.capacity.cpus))}`,
      );
    }
    const freeMem = this.capacity.memoryMb - used.memoryMb;
    if (need.memoryMb > freeMem) {
      reasons.push(`Not enough memory: needs ${need.memoryMb} MB, ${Math.max(0, freeMem)} MB free of ${this.capacity.memoryMb} MB`);
    }
    const rangeSize = this.portRange.to - this.portRange.from + 1;
    // Literal ports a container binds outside the range do not use up the range.
    const freePorts = rangeSize - this.#inRange();
    if (need.numPorts > freePorts) {
      reasons.push(this.portsShort(need.numPorts, freePorts));
    }
    return reasons.length > 0 ? reasons.join('; ') : undefined;
  }

  #inRange(): number {
    let n = 0;
    for (const p of this.#ports) if (p >= this.portRange.from && p <= this.portRange.to) n++;
    return n;
  }

  portsShort(needed: number, free: number): string {
    return `Not enough ports: needs ${needed}, ${Math.max(0, free)} free in ${this.portRange.from}-${this.portRange.to}`;
  }

  /** Record what a task holds; replaces an earlier reservation of the same task. */
  reserve(taskId: string, reservation: Reservation): void {
    this.release(taskId);
    this.#held.set(taskId, { ...reservation, ports: [...reservation.ports] });
    for (const p of reservation.ports) this.#ports.add(p);
  }

  release(taskId: string): void {
    const r = this.#held.get(taskId);
    if (!r) return;
    this.#held.delete(taskId);
    for (const p of r.ports) this.#ports.delete(p);
  }
}
