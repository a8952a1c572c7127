// Every user-facing result message and failure text, in one place.

export const reasons = {
  succeeded: (step: number, total: number) => (total > 1 ? `Deploy succeeded after ${total} steps` : 'Deploy succeeded'),
  canceled: (by?: string) => (by ? `Canceled: ${by}` : 'Canceled by user'),
  rejected: (by?: string) => (by ? `Rejected: ${by}` : 'Rejected by user'),
  requestPaused: (requestId: string) => `Request ${requestId} was paused during the deploy`,
  requestMissing: (requestId: string) => `Request ${requestId} is missing (deleted during the deploy)`,
  taskFailed: (taskId: string, how: string) => `Task ${taskId} ${how} during the deploy`,
  tooManyFailures: (allowed: number) => `At least ${allowed + 1} task(s) for this instance group failed`,
  overdue: (seconds: number) => `Deploy step was not healthy within ${seconds} seconds`,
  couldNotLaunch: (launched: number, wanted: number) => `Only ${launched} of ${wanted} tasks could be launched`,
  neverHealthy: (taskId: string) => `Task ${taskId} did not become healthy in time`,
  lbFailed: (message?: string) => `Load balancer update failed${message ? `: ${message}` : ''}`,
  lbTimedOut: (seconds: number) => `Load balancer update did not finish within ${seconds} seconds`,
  acceptanceFailed: (name: string, message: string) => `Acceptance check ${name} failed: ${message}`,
  acceptanceTimedOut: (seconds: number) => `Acceptance did not pass within ${seconds} seconds`,
  internal: (message: string) => `Internal error: ${message}`,
  lbHandedOver:
    'In flight when the deploy ended: canceled and handed over to the request, which records its outcome on the tasks it touches',
} as const;

export function describeExit(exitCode: number | null | undefined, signal: string | null | undefined): string {
  if (signal) return `was killed by ${signal}`;
  if (exitCode === 0) return 'exited with code 0 (expected to keep running)';
  if (exitCode === null || exitCode === undefined) return 'ended';
  return `exited with code ${exitCode}`;
}
