// Instructor area: token gate, then the workshop list or one workshop's seat grid.

import { useCallback, useState } from 'react';
import { loadInstructorToken, saveInstructorToken } from '../lib/storage';
import { InstructorSignIn } from './InstructorSignIn';
import { WorkshopList } from './WorkshopList';
import { WorkshopDetail } from './WorkshopDetail';

export function Instructor({ path }: { path: string }) {
  const [token, setToken] = useState(loadInstructorToken);
  const [notice, setNotice] = useState<string | null>(null);
  const signOut = useCallback((why?: string) => {
    saveInstructorToken(null);
    setToken(null);
    setNotice(why ?? null);
  }, []);

  if (!token) return <InstructorSignIn onSignedIn={setToken} notice={notice} />;
  const m = /^\/instructor\/workshops\/([^/?#]+)/.exec(path);
  if (m) return <WorkshopDetail token={token} id={decodeURIComponent(m[1])} signOut={signOut} />;
  return <WorkshopList token={token} signOut={signOut} />;
}
