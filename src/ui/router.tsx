// A tiny History-API router: paths are real URLs (deep links work on reload, the server
// answers index.html for them).
import { useEffect, useSyncExternalStore, type AnchorHTMLAttributes, type MouseEvent } from 'react';

export type Route =
  | { name: 'requests' }
  | { name: 'request'; requestId: string }
  | { name: 'newDeploy'; requestId: string }
  | { name: 'history'; requestId: string }
  | { name: 'deploy'; requestId: string; deployId: string }
  | { name: 'task'; taskId: string }
  | { name: 'notFound'; path: string };

const dec = (s: string) => {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
};

export function parseRoute(pathname: string): Route {
  const parts = pathname.split('/').filter(Boolean).map(dec);
  const [a, b, c, d, ...rest] = parts;
  if (parts.length === 0) return { name: 'requests' };
  if (a === 'requests' && b !== undefined && rest.length === 0) {
    if (c === undefined) return { name: 'request', requestId: b };
    if (c === 'deploy' && d === undefined) return { name: 'newDeploy', requestId: b };
    if (c === 'deploys' && d === undefined) return { name: 'history', requestId: b };
    if (c === 'deploys' && d !== undefined) return { name: 'deploy', requestId: b, deployId: d };
  }
  if (a === 'tasks' && b !== undefined && c === undefined) return { name: 'task', taskId: b };
  return { name: 'notFound', path: pathname };
}

const e = encodeURIComponent;
export const paths = {
  requests: () => '/',
  request: (requestId: string) => `/requests/${e(requestId)}`,
  newDeploy: (requestId: string) => `/requests/${e(requestId)}/deploy`,
  history: (requestId: string) => `/requests/${e(requestId)}/deploys`,
  deploy: (requestId: string, deployId: string) => `/requests/${e(requestId)}/deploys/${e(deployId)}`,
  task: (taskId: string) => `/tasks/${e(taskId)}`,
};

const listeners = new Set<() => void>();
window.addEventListener('popstate', () => listeners.forEach((l) => l()));

let focusPending = false;

export function navigate(to: string, options: { replace?: boolean } = {}): void {
  if (to === location.pathname + location.search) return;
  focusPending = !options.replace;
  if (options.replace) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  listeners.forEach((l) => l());
  if (!options.replace) window.scrollTo(0, 0);
}

function subscribe(cb: () => void) {
  listeners.add(cb);
  return () => listeners.delete(cb);
}

export function useLocation(): { pathname: string; search: URLSearchParams } {
  const href = useSyncExternalStore(subscribe, () => location.pathname + location.search);
  const url = new URL(href, location.origin);
  return { pathname: url.pathname, search: url.searchParams };
}

export function useRoute(): Route {
  const { pathname } = useLocation();
  return parseRoute(pathname);
}

/** Move focus to the new page's heading after client-side navigation (screen readers, keyboard). */
export function useFocusOnNavigate(pathname: string): void {
  useEffect(() => {
    if (!focusPending) return;
    focusPending = false;
    document.querySelector<HTMLElement>('main h1')?.focus({ preventScroll: true });
  }, [pathname]);
}

/** An ordinary link that navigates without reloading (modifier clicks still open tabs). */
export function Link({ href, onClick, ...rest }: AnchorHTMLAttributes<HTMLAnchorElement> & { href: string }) {
  const click = (ev: MouseEvent<HTMLAnchorElement>) => {
    onClick?.(ev);
    if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey || rest.target) return;
    ev.preventDefault();
    navigate(href);
  };
  return <a href={href} onClick={click} {...rest} />;
}
