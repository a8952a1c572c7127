// Ends every task a process-runtime test left behind, so no test leaks processes: for each
// sandbox under dataDir, SIGKILL the wrapper's process group while the recorded pid is still
// ours (a reused pid is left alone), then wait (bounded) until the groups are empty.
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { groupIsOurs, groupMembers, readTaskFile } from '../../src/runtimes/process/index.ts';

export async function killSandboxTasks(dataDir: string, timeoutMs = 3_000): Promise<void> {
  let names: string[];
  try {
    names = readdirSync(path.join(dataDir, 'tasks'));
  } catch {
    return;
  }
  const groups: number[] = [];
  for (const name of names) {
    const file = readTaskFile(path.join(dataDir, 'tasks', name));
    if (!file || !groupIsOurs(file.pid, file.startTime)) continue;
    try {
      process.kill(-file.pid, 'SIGKILL');
      groups.push(file.pid);
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + timeoutMs;
  while (groups.some((g) => groupMembers(g).length > 0)) {
    if (Date.now() > deadline) throw new Error(`process groups ${groups.join(', ')} survived SIGKILL`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
