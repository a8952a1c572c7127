export {
  createProcessRuntime,
  ProcessRuntime,
  type ProcessRuntimeOptions,
  type ProcessTaskHandle,
  type RuntimeLogger,
} from './process-runtime.ts';
export { groupIsOurs, groupMembers, isAlive, readStartTime } from './proc.ts';
export { sandboxPath, readTaskFile, type TaskFile } from './sandbox.ts';
