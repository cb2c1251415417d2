// Reconnect backoff: exponential with "equal jitter" (half fixed, half random) so a classroom of
// browsers that lost the server at the same moment does not reconnect in lockstep.

export interface BackoffOptions {
  /** First delay in ms (default 500). */
  baseMs?: number;
  /** Upper bound in ms (default 15000). */
  maxMs?: number;
  /** Growth per attempt (default 2). */
  factor?: number;
  /** Random source in [0, 1) (injectable for tests). */
  random?: () => number;
}

export class Backoff {
  private attempt = 0;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly factor: number;
  private readonly random: () => number;

  constructor(opts: BackoffOptions = {}) {
    this.baseMs = opts.baseMs ?? 500;
    this.maxMs = opts.maxMs ?? 15000;
    this.factor = opts.factor ?? 2;
    this.random = opts.random ?? Math.random;
  }

  /** Number of delays handed out since the last reset. */
  get attempts(): number {
    return this.attempt;
  }

  /** The ceiling of the next delay, without jitter. */
  ceiling(attempt = this.attempt): number {
    return Math.min(this.maxMs, this.baseMs * Math.pow(this.factor, attempt));
  }

  /** Returns the next delay in ms and advances the attempt counter. */
  next(): number {
    const cap = this.ceiling();
    this.attempt += 1;
    const half = cap / 2;
    return Math.round(half + this.random() * half);
  }

  /** Call after a connection succeeded. */
  reset(): void {
    this.attempt = 0;
  }
}
