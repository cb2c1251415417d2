// Entry point: routes learners (/, /workspace) and instructors (/instructor...).

import { createRoot } from 'react-dom/client';
import './styles.css';
import { useLocation } from './lib/router';
import { JoinPage } from './pages/JoinPage';
import { Workspace } from './pages/Workspace';
import { Instructor } from './pages/Instructor';
import { TopBar } from './components/TopBar';

function App() {
  const loc = useLocation();
  const path = loc.split('?')[0];
  if (path === '/' || path === '/join' || path.startsWith('/join/')) return <JoinPage key={loc} />;
  if (path === '/workspace') return <Workspace />;
  if (path === '/instructor' || path.startsWith('/instructor/')) return <Instructor path={path} />;
  return (
    <div className="center-page">
      <TopBar />
      <main>
        <div className="card join-card">
          <h1>Page not found</h1>
          <p className="lead">There is nothing at {path}.</p>
          <a className="btn primary" href="/">
            Go to the join page
          </a>
        </div>
      </main>
    </div>
  );
}

const root = document.getElementById('root');
if (root) createRoot(root).render(<App />);
