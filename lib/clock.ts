/**
 * A monotonic clock in epoch milliseconds: immune to wall-clock jumps (NTP
 * steps would otherwise fire or starve timers in the decision core) yet still
 * printable as a date.
 * @module
 */

/** Milliseconds since the epoch, monotonic within this process. */
export function monotonicNow(): number {
  return performance.timeOrigin + performance.now();
}
