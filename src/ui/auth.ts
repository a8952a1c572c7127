// Who the UI acts as: an API token kept in this browser's localStorage for this origin (so
// deep links opened in new tabs work; "Sign out" forgets it). `/?token=…` is taken once, like
// Jupyter's link, and dropped from the address bar at once. Every API call sends the token as
// a header, never in a URL; a 401 anywhere forgets it and the UI asks again.
import { FledgeApiError, FledgeClient, FledgeConnectionError, type Role, type Whoami } from '../api/client.ts';

const KEY = 'fledge.token';
const ORDER: Role[] = ['read', 'deploy', 'admin'];

export type AuthStatus = 'checking' | 'signed-in' | 'needs-token' | 'offline';

export interface AuthState {
  status: AuthStatus;
  me?: Whoami;
  /** why a token is asked for again (it was refused) */
  notice?: string;
}

function storedToken(): string | undefined {
  try {
    return localStorage.getItem(KEY) ?? undefined;
  } catch {
    return undefined;
  }
}

function storeToken(token: string | undefined): void {
  try {
    if (token === undefined) localStorage.removeItem(KEY);
    else localStorage.setItem(KEY, token);
  } catch {
    // storage disabled: the token lives as long as this page
  }
  memory = token;
}

let memory = storedToken();

/** `/?token=…`: keep the token, and take it out of the address bar and the history entry. */
export function adoptUrlToken(): void {
  const url = new URL(window.location.href);
  const token = url.searchParams.get('token');
  if (token === null) return;
  url.searchParams.delete('token');
  window.history.replaceState(window.history.state, '', `${url.pathname}${url.search}${url.hash}`);
  if (token.trim() !== '') storeToken(token.trim());
}

class AuthStore {
  state: AuthState = { status: 'checking' };
  readonly #listeners = new Set<() => void>();
  #checking: Promise<void> | undefined;

  token(): string | undefined {
    return memory;
  }

  /** Ask the server who the token is (GET /api/auth/whoami). */
  check(): Promise<void> {
    this.#checking ??= (async () => {
      try {
        const me = await authedClient.whoami();
        this.#set({ status: 'signed-in', me });
      } catch (err) {
        if (err instanceof FledgeApiError && err.status === 401) return; // unauthorized() has set the state
        if (err instanceof FledgeConnectionError) this.#set({ ...this.state, status: 'offline' });
        else this.#set({ status: 'needs-token', notice: err instanceof Error ? err.message : String(err) });
      } finally {
        this.#checking = undefined;
      }
    })();
    return this.#checking;
  }

  async signIn(token: string): Promise<void> {
    storeToken(token.trim());
    this.#set({ status: 'checking' });
    await this.check();
  }

  signOut(): void {
    storeToken(undefined);
    this.#set({ status: 'needs-token' });
  }

  /** Any 401: the token is unknown, revoked or missing. */
  unauthorized(): void {
    const had = memory !== undefined;
    storeToken(undefined);
    this.#set({ status: 'needs-token', ...(had ? { notice: 'The token was not accepted (unknown or revoked). Enter another one.' } : {}) });
  }

  /** Whether the signed-in token's role allows what `needed` allows. */
  can(needed: Role): boolean {
    const role = this.state.me?.role;
    return role !== undefined && ORDER.indexOf(role) >= ORDER.indexOf(needed);
  }

  subscribe(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #set(state: AuthState): void {
    this.state = state;
    for (const l of this.#listeners) l();
  }
}

export const auth = new AuthStore();

/** fetch with this page's token, and every 401 reported to the auth store. */
export const authedFetch: typeof fetch = async (input, init) => {
  const headers = new Headers(init?.headers);
  const token = auth.token();
  if (token !== undefined) headers.set('Authorization', `Bearer ${token}`);
  const res = await fetch(input, { ...init, headers });
  if (res.status === 401) auth.unauthorized();
  return res;
};

const authedClient = new FledgeClient(window.location.origin, { fetch: authedFetch });
