/**
 * Everything the bench has started and must not leave behind: supervisors
 * (in their own process groups, so a Ctrl-C at the terminal never reaches
 * them), apps, floor modules, simulators, doubles and temporary directories.
 * Each owner registers its own cleanup and removes it once done; an
 * interrupted or failed run calls {@link cleanupAll}.
 * @module
 */

const pending = new Set<() => Promise<void>>();

/** Registers `fn` to run on {@link cleanupAll}; returns the function that unregisters it. */
export function onCleanup(fn: () => Promise<void>): () => void {
  pending.add(fn);
  return () => pending.delete(fn);
}

/** Runs every registered cleanup (concurrently, errors ignored) and forgets them. */
export async function cleanupAll(): Promise<void> {
  const fns = [...pending];
  pending.clear();
  await Promise.allSettled(fns.map((fn) => fn()));
}
