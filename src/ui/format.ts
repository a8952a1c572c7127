// Formatting for times, durations and states.

export function clockTime(ms: number | undefined): string {
  if (ms === undefined) return '—';
  const d = new Date(ms);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

export function dateTime(ms: number | undefined): string {
  if (ms === undefined) return '—';
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function duration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return '—';
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

/** An age in words: "just now", "12 s ago", "3 min ago". */
export function age(ms: number): string {
  const s = Math.floor(Math.max(0, ms) / 1000);
  if (s < 1) return 'just now';
  if (s < 120) return `${s} s ago`;
  if (s < 7200) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

export function iso(ms: number | undefined): string | undefined {
  return ms === undefined ? undefined : new Date(ms).toISOString();
}

/** Color family of a state word, for badges. */
export function tone(state: string | undefined): 'good' | 'bad' | 'warn' | 'busy' | 'idle' {
  switch (state) {
    case 'ACTIVE':
    case 'SUCCEEDED':
    case 'HEALTHY':
    case 'TASK_RUNNING':
    case 'SUCCESS':
      return 'good';
    case 'FAILED':
    case 'FAILED_INTERNAL_STATE':
    case 'OVERDUE':
    case 'UNHEALTHY':
    case 'TASK_FAILED':
    case 'TASK_LOST':
    case 'TASK_ERROR':
      return 'bad';
    case 'PAUSED':
    case 'CANCELED':
    case 'DELETING':
    case 'TASK_KILLING':
    case 'TASK_CLEANING':
    case 'TASK_KILLED':
      return 'warn';
    case 'WAITING':
    case 'PENDING':
    case 'DEPLOYING_TO_UNPAUSE':
    case 'TASK_LAUNCHED':
    case 'TASK_STARTING':
    case 'UNKNOWN':
      return 'busy';
    default:
      return 'idle';
  }
}

export function humanState(state: string): string {
  return state
    .replace(/^TASK_/, '')
    .replace(/_/g, ' ')
    .toLowerCase();
}

export const PHASE_LABELS: Record<string, string> = {
  LAUNCH: 'Launch',
  HEALTH: 'Health',
  LB_UPDATE: 'Load balancer',
  ACCEPTANCE: 'Acceptance',
  ADVANCE: 'Advance',
  END: 'End',
};

/** "TASK_FAILED_ON_STARTUP" → "Task failed on startup". */
export function reasonText(reason: string): string {
  const words = reason.replace(/_/g, ' ').toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}
