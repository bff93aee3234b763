/**
 * Signal listening for the dev launchers, with one Ctrl-C counted once.
 * @module
 */

/**
 * One Ctrl-C can reach a process started by `deno task` twice: from the
 * terminal (which signals the whole foreground process group) and from
 * `deno task`, which forwards what it receives. A repeat of the same signal
 * within this window is dropped, so a second signal really means a second
 * key press; a human's deliberate second Ctrl-C comes later than this.
 */
export const DUPLICATE_SIGNAL_WINDOW_MS = 250;

/**
 * Calls `handler` for each of `signals`, dropping a repeat of the same signal
 * within {@link DUPLICATE_SIGNAL_WINDOW_MS}. Returns a function that removes
 * the listeners.
 */
export function onSignals(
  signals: readonly Deno.Signal[],
  handler: (sig: Deno.Signal) => void,
): () => void {
  const last = new Map<Deno.Signal, number>();
  const installed = signals.map((sig) => {
    const fn = () => {
      const now = performance.now();
      const prev = last.get(sig);
      if (prev !== undefined && now - prev < DUPLICATE_SIGNAL_WINDOW_MS) return;
      last.set(sig, now);
      handler(sig);
    };
    Deno.addSignalListener(sig, fn);
    return [sig, fn] as const;
  });
  return () => {
    for (const [sig, fn] of installed) Deno.removeSignalListener(sig, fn);
  };
}
