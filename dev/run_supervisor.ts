/**
 * Runs `main.ts` from source with exactly the permission flags of deno.json's
 * compile task, so `deno task doctor` (and any ad-hoc run) gets production's
 * permissions without a second copy of the flag list:
 *
 * ```sh
 * deno run --allow-read --allow-run dev/run_supervisor.ts doctor
 * deno run --allow-read --allow-run dev/run_supervisor.ts -- /usr/bin/navidrome
 * ```
 *
 * The supervisor inherits the environment, stdout and stderr, and its exit
 * code becomes this launcher's.
 * @module
 */

import { supervisorCommand } from "./permissions.ts";
import { onSignals } from "./signals.ts";

/** Signals passed on to the supervisor. */
const FORWARDED: readonly Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1"];

/** Spawns the supervisor with `args`; resolves with its exit code. */
export async function runSupervisor(args: readonly string[]): Promise<number> {
  const [cmd, ...flags] = supervisorCommand();
  const child = new Deno.Command(cmd, {
    args: [...flags, ...args],
    // Its own process group, so a terminal's Ctrl-C reaches it only through
    // the forwarding below, exactly once: the supervisor treats a second
    // SIGINT as "kill Navidrome now".
    detached: true,
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  const removeListeners = onSignals(FORWARDED, (sig) => {
    try {
      child.kill(sig);
    } catch {
      // Already exited; its status is about to resolve.
    }
  });
  try {
    const status = await child.status;
    // A death by signal maps to 128 + its number, as a shell reports it.
    return status.signal ? 128 + (SIGNAL_NUMBERS[status.signal] ?? 0) : status.code;
  } finally {
    removeListeners();
  }
}

const SIGNAL_NUMBERS: Partial<Record<Deno.Signal, number>> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGTERM: 15,
};

if (import.meta.main) {
  Deno.exit(await runSupervisor(Deno.args));
}
