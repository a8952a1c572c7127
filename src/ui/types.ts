// Types the UI reads from the API (re-exported from the shared client).
export type {
  Decision,
  DeployFailure,
  DeployHistoryView,
  DeployPlan,
  DeployProgress,
  PendingDeployView,
  RequestParent,
  TaskView,
} from '../api/client.ts';
import type { DeployProgress } from '../api/client.ts';

export type LbUpdateView = DeployProgress['lbUpdates'][number];
