// Data hooks: a fetched resource that refetches when a live event touches it.
import { useCallback, useEffect, useRef, useState, useSyncExternalStore } from 'react';
import type { Role } from '../api/client.ts';
import { auth } from './auth.ts';
import { live, type LiveEvent, type LiveStatus } from './live.ts';

export interface Resource<T> {
  data: T | undefined;
  error: unknown;
  /** true until the first answer (later refetches keep showing the last data) */
  loading: boolean;
  reload: () => void;
}

/** Trailing debounce for bursts of events, but never holding an update back longer than this. */
const DEBOUNCE_MS = 120;
const MAX_WAIT_MS = 500;

/**
 * `fetcher` is called on mount, when `key` changes, and (debounced) after every live event
 * `matches` accepts. Overlapping fetches are coalesced: one runs, one more follows if needed.
 */
export function useResource<T>(key: string, fetcher: () => Promise<T>, matches?: (e: LiveEvent) => boolean): Resource<T> {
  const [state, setState] = useState<{ key: string; data?: T; error?: unknown; loaded: boolean }>({ key, loaded: false });
  const fetcherRef = useRef(fetcher);
  fetcherRef.current = fetcher;
  const matchesRef = useRef(matches);
  matchesRef.current = matches;
  const inFlight = useRef(false);
  const again = useRef(false);
  const alive = useRef(true);

  const load = useCallback(async () => {
    if (inFlight.current) {
      again.current = true;
      return;
    }
    inFlight.current = true;
    try {
      do {
        again.current = false;
        try {
          const data = await fetcherRef.current();
          if (alive.current) setState({ key, data, error: undefined, loaded: true });
        } catch (error) {
          if (alive.current) setState((s) => ({ key, data: s.key === key ? s.data : undefined, error, loaded: true }));
        }
      } while (again.current && alive.current);
    } finally {
      inFlight.current = false;
    }
  }, [key]);

  useEffect(() => {
    alive.current = true;
    setState((s) => (s.key === key ? s : { key, loaded: false }));
    void load();
    let timer: ReturnType<typeof setTimeout> | undefined;
    let firstAt = 0;
    const unsubscribe = live.subscribe((e) => {
      if (e.kind !== 'resync' && !matchesRef.current?.(e)) return;
      const now = Date.now();
      if (timer === undefined) firstAt = now;
      clearTimeout(timer);
      const wait = Math.max(0, Math.min(DEBOUNCE_MS, firstAt + MAX_WAIT_MS - now));
      timer = setTimeout(() => {
        timer = undefined;
        void load();
      }, wait);
    });
    return () => {
      alive.current = false;
      clearTimeout(timer);
      unsubscribe();
    };
  }, [key, load]);

  const current = state.key === key ? state : { data: undefined, error: undefined, loaded: false };
  return { data: current.data, error: current.error, loading: !current.loaded, reload: () => void load() };
}

export function useLiveStatus(): LiveStatus {
  return useSyncExternalStore(
    (cb) => live.onStatus(cb),
    () => live.status,
  );
}

/** Re-render every `ms` (for "3 s ago" and running durations); no data is fetched. */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

/** Set the page title. */
export function useTitle(title: string): void {
  useEffect(() => {
    document.title = `${title} · Fledge`;
  }, [title]);
}

/** Whether the signed-in token may do what `role` allows (re-renders when the token changes). */
export function useCan(role: Role): boolean {
  return useSyncExternalStore(
    (cb) => auth.subscribe(cb),
    () => auth.can(role),
  );
}
