// The tasks of one request as a pure step sees them: the observed records with the step's own
// changes laid over them. Immutable: `with` returns a new view.
import type { TaskRecord } from './model.ts';
import { byInstance } from './tasks.ts';

export class TaskView {
  readonly #byId: ReadonlyMap<string, TaskRecord>;
  #sorted: TaskRecord[] | undefined;
  readonly #ofDeploy = new Map<string | undefined, TaskRecord[]>();

  private constructor(byId: ReadonlyMap<string, TaskRecord>) {
    this.#byId = byId;
  }

  static of(tasks: readonly TaskRecord[]): TaskView {
    return new TaskView(new Map(tasks.map((t) => [t.taskId.id, t])));
  }

  /** This view with `changes` applied (a known id keeps its place; a new one comes last). */
  with(changes: readonly TaskRecord[]): TaskView {
    if (changes.length === 0) return this;
    const next = new Map(this.#byId);
    for (const t of changes) next.set(t.taskId.id, t);
    return new TaskView(next);
  }

  /** This view without the given tasks (records deleted in this step). */
  without(ids: readonly string[]): TaskView {
    if (ids.length === 0) return this;
    const next = new Map(this.#byId);
    for (const id of ids) next.delete(id);
    return new TaskView(next);
  }

  get(id: string): TaskRecord | undefined {
    return this.#byId.get(id);
  }

  ids(): Set<string> {
    return new Set(this.#byId.keys());
  }

  /** Every task, by instance number then start time (ties keep the order they were seen in). */
  all(): readonly TaskRecord[] {
    return (this.#sorted ??= [...this.#byId.values()].sort(byInstance));
  }

  /** The tasks of one deploy, in the order of `all()`. */
  ofDeploy(deployId: string | undefined): readonly TaskRecord[] {
    let found = this.#ofDeploy.get(deployId);
    if (!found) {
      found = this.all().filter((t) => t.taskId.deployId === deployId);
      this.#ofDeploy.set(deployId, found);
    }
    return found;
  }
}

/** Changes in the order they were made, one record per task: its last version, at its first place. */
export function collapseChanges(changes: readonly TaskRecord[]): TaskRecord[] {
  const byId = new Map<string, TaskRecord>();
  for (const t of changes) byId.set(t.taskId.id, t);
  return [...byId.values()];
}
