// Ends every task a process-runtime test left behind, so no test leaks processes: for each
// sandbox under dataDir, SIGKILL the wrapper's process group while the recorded pid is still
// ours (a reused pid is left alone), and every other process of the task's tree (its cgroup,
// and processes carrying its FLEDGE_TASK_ID mark, e.g. children that called setsid); then wait
// (bounded) until all of them are gone.
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { groupIsOurs, groupMembers, readTaskFile } from '../../src/runtimes/process/index.ts';
import { cgroupMembers, cgroupRootPath, markedProcesses, removeCgroup, signalAll } from '../../src/runtimes/process/tree.ts';

export async function killSandboxTasks(dataDir: string, timeoutMs = 3_000): Promise<void> {
  let names: string[];
  try {
    names = readdirSync(path.join(dataDir, 'tasks'));
  } catch {
    return;
  }
  const groups: number[] = [];
  const tasks: { taskId: string; cgroup?: string }[] = [];
  for (const name of names) {
    const file = readTaskFile(path.join(dataDir, 'tasks', name));
    if (!file) continue;
    tasks.push({ taskId: file.taskId, ...(file.cgroup ? { cgroup: file.cgroup } : {}) });
    if (!groupIsOurs(file.pid, file.startTime)) continue;
    try {
      process.kill(-file.pid, 'SIGKILL');
      groups.push(file.pid);
    } catch {
      // already gone
    }
  }
  const rest = () => tasks.flatMap((t) => [...cgroupMembers(t.cgroup), ...markedProcesses(t.taskId)]);
  signalAll(rest(), 'SIGKILL');
  const deadline = Date.now() + timeoutMs;
  while (groups.some((g) => groupMembers(g).length > 0) || rest().length > 0) {
    if (Date.now() > deadline) throw new Error(`processes of ${tasks.map((t) => t.taskId).join(', ')} survived SIGKILL`);
    signalAll(rest(), 'SIGKILL');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  for (const t of tasks) removeCgroup(t.cgroup);
  removeCgroup(cgroupRootPath(dataDir));
}
