// The Fledge web UI: pages by URL, one live event stream, the shared typed API client.
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
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

function App() {
  const route = useRoute();
  const { pathname } = useLocation();
  useFocusOnNavigate(pathname);
  const status = useLiveStatus();
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
        <ConnectionBanner />
      </header>
      {status === 'down' && (
        <div className="down-banner" role="alert">
          Fledge is not reachable. What you see may be out of date; it updates as soon as the server answers again.
        </div>
      )}
      <main id="main">
        <Page route={route} />
      </main>
    </>
  );
}

live.start();
const root = document.getElementById('root');
if (!root) throw new Error('no #root');
createRoot(root).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
