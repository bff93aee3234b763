/**
 * Readiness: polls Navidrome's health URL after a start, so logs and /status
 * can say when it began to answer (migrations can take a while).
 * @module
 */

import { abortableDelay } from "./delay.ts";

/** One probe may take this long; /ping answers in microseconds when healthy. */
export const PROBE_TIMEOUT_MS = 1000;

/**
 * Polls `url` every `intervalMs` until it answers 2xx (resolves true) or
 * `signal` aborts (resolves false).
 */
export async function waitReady(
  url: string,
  intervalMs: number,
  signal: AbortSignal,
): Promise<boolean> {
  while (!signal.aborted) {
    try {
      const res = await fetch(url, {
        signal: AbortSignal.any([signal, AbortSignal.timeout(PROBE_TIMEOUT_MS)]),
      });
      await res.body?.cancel();
      if (res.ok) return true;
    } catch {
      // not listening yet
    }
    await abortableDelay(intervalMs, signal);
  }
  return false;
}
