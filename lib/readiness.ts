/**
 * Readiness: polls Navidrome's health URL after a start, so logs and /status
 * can say when it began to answer (migrations can take a while) and the
 * registration can go in with its checks already passing.
 * @module
 */

import { abortableDelay } from "./delay.ts";

/** One probe may take this long; /ping answers in microseconds when healthy. */
export const PROBE_TIMEOUT_MS = 1000;

/**
 * Delay before the second probe. A small app binds its port tens of
 * milliseconds after the spawn, so the first probe (sent at once) usually
 * fails; probing again this soon, doubling up to the configured interval
 * (10, 30, 70, 150 ms… after the spawn), registers a quick starter within
 * milliseconds of its first answer instead of one whole interval later, for
 * a handful of refused connections more per start.
 */
export const FIRST_RETRY_MS = 10;

/**
 * The pause after the n-th failed probe (n from 0): {@link FIRST_RETRY_MS}
 * doubling, capped at `intervalMs`.
 */
export function probeDelay(failedProbes: number, intervalMs: number): number {
  return Math.min(intervalMs, FIRST_RETRY_MS * 2 ** failedProbes);
}

/**
 * Probes `url` until it answers 2xx (resolves true) or `signal` aborts
 * (resolves false), pausing {@link probeDelay} between probes.
 */
export async function waitReady(
  url: string,
  intervalMs: number,
  signal: AbortSignal,
): Promise<boolean> {
  for (let failed = 0; !signal.aborted; failed++) {
    try {
      const res = await fetch(url, {
        signal: AbortSignal.any([signal, AbortSignal.timeout(PROBE_TIMEOUT_MS)]),
      });
      await res.body?.cancel();
      if (res.ok) return true;
    } catch {
      // Not listening yet.
    }
    await abortableDelay(probeDelay(failed, intervalMs), signal);
  }
  return false;
}
