// The Fledge web UI: pages by URL, one live event stream, the shared typed API client, and
// the token it acts with (auth.ts): asked for when there is none or it is refused.
import { StrictMode, useState, useSyncExternalStore, type FormEvent } from 'react';
import { createRoot } from 'react-dom/client';
import { adoptUrlToken, auth, type AuthState } from './auth.ts';
import { Loading } from './components.tsx';
import { useLiveStatus } from './hooks.ts';
import { live } from './live.ts';
import { DeployPage } from './pages/DeployPage.tsx';
import { HistoryPage } from './pages/HistoryPage.tsx';
import { NewDeployPage } from './pages/NewDeployPage.tsx';
import { RequestPage } from './pages/RequestPage.tsx';
import { RequestsPage } from './pages/RequestsPage.tsx';
import { TaskPage } from './pages/TaskPage.tsx';
import { Link, paths, useFocusOnNavigate, useLocation, useRoute, type Route } from './router.tsx';
import './styles.css';

function Page({ route }: { route: Route }) {
  switch (route.name) {
    case 'requests':
      return <RequestsPage />;
    case 'request':
      return <RequestPage key={route.requestId} requestId={route.requestId} />;
    case 'newDeploy':
      return <NewDeployPage key={route.requestId} requestId={route.requestId} />;
    case 'history':
      return <HistoryPage key={route.requestId} requestId={route.requestId} />;
    case 'deploy':
      return <DeployPage key={`${route.requestId}/${route.deployId}`} requestId={route.requestId} deployId={route.deployId} />;
    case 'task':
      return <TaskPage key={route.taskId} taskId={route.taskId} />;
    case 'notFound':
      return (
        <>
          <h1 tabIndex={-1}>Page not found</h1>
          <p>
            Nothing lives at <code>{route.path}</code>. <Link href={paths.requests()}>See all requests</Link>.
          </p>
        </>
      );
  }
}

function ConnectionBanner() {
  const status = useLiveStatus();
  return (
    <div className={`conn conn-${status}`} role="status" aria-live="polite" title="Live updates from /api/events">
      <span className="conn-dot" aria-hidden="true" />
      {status === 'live' ? 'Live' : status === 'connecting' ? 'Connecting…' : 'Offline'}
    </div>
  );
}

function useAuth(): AuthState {
  return useSyncExternalStore(
    (cb) => auth.subscribe(cb),
    () => auth.state,
  );
}

/** Which token acts (name and role), and how to stop using it. */
function Identity({ state }: { state: AuthState }) {
  if (state.status !== 'signed-in' || !state.me) return null;
  const { me } = state;
  return (
    <div className="identity" aria-label="Signed in as">
      {me.auth ? (
        <>
          <span className="identity-name">{me.name}</span> <span className={`badge role role-${me.role}`}>{me.role}</span>
          <button type="button" className="btn btn-small" onClick={() => auth.signOut()}>
            Sign out
          </button>
        </>
      ) : (
        <span className="badge badge-bad" title="fledge serve --no-auth: anyone on this machine can act as admin">
          auth off
        </span>
      )}
    </div>
  );
}

function TokenPrompt({ state }: { state: AuthState }) {
  const [token, setToken] = useState('');
  const [busy, setBusy] = useState(false);
  const submit = async (ev: FormEvent) => {
    ev.preventDefault();
    setBusy(true);
    try {
      await auth.signIn(token);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section className="card token-prompt" aria-labelledby="token-title">
      <h1 id="token-title" tabIndex={-1}>
        Sign in with a token
      </h1>
      {state.notice && (
        <p className="field-error" role="alert">
          {state.notice}
        </p>
      )}
      <p>
        This Fledge needs an API token. The admin token is in <code>admin.token</code> in the server&apos;s data dir (
        <code>.fledge/admin.token</code> by default); <code>fledge token create --role read --name you</code> makes one that can only look.
      </p>
      <form onSubmit={submit}>
        <p className="field">
          <label htmlFor="token-input">Token</label>
          <input
            id="token-input"
            type="password"
            autoComplete="off"
            spellCheck={false}
            required
            value={token}
            onChange={(e) => setToken(e.target.value)}
            placeholder="fl_…"
          />
        </p>
        <button type="submit" className="btn btn-primary" disabled={busy || token.trim() === ''}>
          {busy ? 'Checking…' : 'Sign in'}
        </button>
      </form>
      <p className="muted">It is kept in this browser for this address only, until you sign out.</p>
    </section>
  );
}

function App() {
  const route = useRoute();
  const { pathname } = useLocation();
  useFocusOnNavigate(pathname);
  const status = useLiveStatus();
  const authState = useAuth();
  const signedIn = authState.status === 'signed-in';
  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <nav aria-label="Main">
          <Link href={paths.requests()} className="brand" aria-current={route.name === 'requests' ? 'page' : undefined}>
            Fledge
          </Link>
          <Link href={paths.requests()}>Requests</Link>
        </nav>
        <div className="top-right">
          <Identity state={authState} />
          {signedIn && <ConnectionBanner />}
        </div>
      </header>
      {(authState.status === 'offline' || (signedIn && status === 'down')) && (
        <div className="down-banner" role="alert">
          Fledge is not reachable. What you see may be out of date; it updates as soon as the server answers again.
        </div>
      )}
      <main id="main">
        {signedIn ? (
          <Page route={route} />
        ) : authState.status === 'needs-token' ? (
          <TokenPrompt state={authState} />
        ) : authState.status === 'offline' ? (
          <h1 tabIndex={-1}>Fledge is not reachable</h1>
        ) : (
          <Loading />
        )}
      </main>
    </>
  );
}

adoptUrlToken();
void auth.check();
// Offline at the first look: look again now and then.
setInterval(() => {
  if (auth.state.status === 'offline') void auth.check();
}, 3_000);
live.start();
const root = document.getElementById('root');
if (!root) throw new Error('no #root');
createRoot(root).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
