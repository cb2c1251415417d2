// Instructor area: sign-in gate (the pasted token is traded for a 12 h session kept in
// sessionStorage), then the workshop list or one workshop's seat grid. Every page gets the
// session token; signing out revokes it.

import { useCallback, useState } from 'react';
import { api } from '../api/client';
import { loadInstructorSession, saveInstructorSession } from '../lib/storage';
import { InstructorSignIn } from './InstructorSignIn';
import { WorkshopList } from './WorkshopList';
import { WorkshopDetail } from './WorkshopDetail';

export function Instructor({ path }: { path: string }) {
  const [token, setToken] = useState(() => loadInstructorSession()?.token ?? null);
  const [notice, setNotice] = useState<string | null>(null);
  const signOut = useCallback(
    (why?: string) => {
      if (token && !why) void api.revokeInstructorSession(token).catch(() => undefined);
      saveInstructorSession(null);
      setToken(null);
      setNotice(why ?? null);
    },
    [token],
  );

  if (!token) return <InstructorSignIn onSignedIn={setToken} notice={notice} />;
  const m = /^\/instructor\/workshops\/([^/?#]+)/.exec(path);
  if (m) return <WorkshopDetail token={token} id={decodeURIComponent(m[1])} signOut={signOut} />;
  return <WorkshopList token={token} signOut={signOut} />;
}
