// Debounced autosave per file. Each path has at most one save in flight; edits made during a
// save are saved right after it, so the last keystroke always lands and saves never race.

export type SaveState = 'clean' | 'dirty' | 'saving' | 'error';

export interface AutosaveOptions {
  delayMs?: number;
  save: (path: string, content: string) => Promise<void>;
  onState?: (path: string, state: SaveState, error?: unknown) => void;
}

interface Entry {
  pending: string | null;
  timer: ReturnType<typeof setTimeout> | null;
  inFlight: Promise<void> | null;
}

export class Autosave {
  private readonly entries = new Map<string, Entry>();
  private readonly delayMs: number;

  constructor(private readonly opts: AutosaveOptions) {
    this.delayMs = opts.delayMs ?? 500;
  }

  private entry(path: string): Entry {
    let e = this.entries.get(path);
    if (!e) {
      e = { pending: null, timer: null, inFlight: null };
      this.entries.set(path, e);
    }
    return e;
  }

  /** Records new content for `path` and (re)starts its debounce timer. */
  change(path: string, content: string): void {
    const e = this.entry(path);
    e.pending = content;
    this.opts.onState?.(path, 'dirty');
    if (e.timer !== null) clearTimeout(e.timer);
    e.timer = setTimeout(() => {
      e.timer = null;
      void this.run(path);
    }, this.delayMs);
  }

  /** Whether `path` has content not yet written. */
  isDirty(path: string): boolean {
    const e = this.entries.get(path);
    return !!e && (e.pending !== null || e.inFlight !== null);
  }

  /** Saves `path` now (Ctrl/Cmd-S); resolves once everything typed so far is written. */
  async flush(path: string): Promise<void> {
    const e = this.entries.get(path);
    if (!e) return;
    if (e.timer !== null) {
      clearTimeout(e.timer);
      e.timer = null;
    }
    await this.run(path);
  }

  /** Saves every dirty file. */
  async flushAll(): Promise<void> {
    await Promise.all([...this.entries.keys()].map((p) => this.flush(p)));
  }

  /** Forgets `path` (tab closed after a flush, file deleted). Pending content is dropped. */
  forget(path: string): void {
    const e = this.entries.get(path);
    if (e?.timer != null) clearTimeout(e.timer);
    this.entries.delete(path);
  }

  private async run(path: string): Promise<void> {
    const e = this.entries.get(path);
    if (!e) return;
    while (e.inFlight) await e.inFlight;
    if (e.pending === null) return;
    const content = e.pending;
    e.pending = null;
    this.opts.onState?.(path, 'saving');
    let failed: unknown = null;
    e.inFlight = this.opts.save(path, content).catch((err: unknown) => {
      failed = err ?? new Error('save failed');
      // Keep the unsaved text so the next edit or flush retries it.
      if (e.pending === null) e.pending = content;
    });
    await e.inFlight;
    e.inFlight = null;
    if (failed !== null) {
      this.opts.onState?.(path, 'error', failed);
      return;
    }
    if (e.pending !== null) {
      if (e.timer === null) await this.run(path);
      return;
    }
    this.opts.onState?.(path, 'clean');
  }
}
