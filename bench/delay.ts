/**
 * The bench's only deliberate pauses: a random spread of when a change or a
 * signal lands relative to a supervisor's polling period, and the fixed idle
 * measurement window. Everything else waits on conditions with deadlines.
 * @module
 */

/** Resolves after a uniformly random time in [0, maxMs). */
export function randomDelay(maxMs: number): Promise<void> {
  return delay(Math.random() * maxMs);
}

/** Resolves after `ms` (a measurement window, not a guess at when something is done). */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
