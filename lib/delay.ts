/**
 * A delay that ends early when its signal aborts, so background loops stop
 * promptly on shutdown instead of finishing their sleep.
 * @module
 */

/** Resolves after `ms`, or as soon as `signal` aborts. Never rejects. */
export function abortableDelay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
