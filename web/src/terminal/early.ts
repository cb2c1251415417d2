// The learner's first terminal socket, opened the moment the join answers (issue 12: click ->
// live terminal <= 300 ms). Without it the ticket, the WebSocket upgrade and a paused seat's
// thaw all waited for React to render the IDE and for xterm to start; with it they run while
// the page renders. The terminal's connection adopts the socket for its first attempt; frames
// that arrived before are kept, in order, and handed over then.

/** A WebSocket opened before anyone listens: what happened to it so far. */
export class Preopened {
  readonly frames: (ArrayBuffer | string)[] = [];
  opened = false;
  closed: { code: number; reason: string } | null = null;

  constructor(readonly ws: WebSocket) {
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => {
      this.opened = true;
    };
    ws.onmessage = (e: MessageEvent<ArrayBuffer | string>) => {
      this.frames.push(e.data);
    };
    ws.onclose = (e) => {
      this.closed = { code: e.code, reason: e.reason };
    };
  }
}

/** An early socket nobody took (the IDE never opened that terminal) is closed after this. */
const UNCLAIMED_MS = 15000;

let early: { key: string; socket: Promise<Preopened | null>; timer: ReturnType<typeof setTimeout> } | null = null;

/**
 * Opens the socket for terminal `key` now, unless one is already on its way for that key.
 * Resolves once the socket is made (its upgrade then goes on by itself) or its ticket failed.
 */
export async function openEarly(key: string, url: () => Promise<string>): Promise<void> {
  if (early?.key === key) {
    await early.socket;
    return;
  }
  discardEarly();
  const socket = url().then(
    (u) => new Preopened(new WebSocket(u)),
    () => null, // the terminal's own first attempt will ask again and report the failure
  );
  early = { key, socket, timer: setTimeout(discardEarly, UNCLAIMED_MS) };
  await socket;
}

/** The early socket of terminal `key`, once; `null` when none was opened for it. */
export function takeEarly(key: string): Promise<Preopened | null> | null {
  if (early?.key !== key) return null;
  const { socket, timer } = early;
  clearTimeout(timer);
  early = null;
  return socket;
}

function discardEarly(): void {
  if (!early) return;
  const { socket, timer } = early;
  clearTimeout(timer);
  early = null;
  void socket.then((p) => p?.ws.close(1000));
}
