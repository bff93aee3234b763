/**
 * Deno's floor: a module that does (almost) nothing but say it is up and stay
 * alive. Run with the supervisor's exact `deno run` flags, it shows how much
 * of the supervisor's start-up time, memory and idle CPU is Deno's own, and
 * the variants split the rest into its parts:
 *
 * - `empty`: nothing at all;
 * - `yaml`, `logtape`: one npm dependency loaded (each pulls in Deno's Node
 *   compatibility layer);
 * - `modules`: every supervisor module loaded (main.ts, not run);
 * - `poll`: the `.primary` poll alone: lib/primary_file.ts's poller on
 *   `<dir>`, where `.primary` is absent as on a primary (the interval is the
 *   bench's POLL_INTERVAL_MS).
 *
 * usage: floor.ts [empty|yaml|logtape|modules|poll <dir>]
 * @module
 */

import { POLL_INTERVAL_MS } from "./settings.ts";

/** The variants, see the module documentation. */
export const FLOOR_VARIANTS = ["empty", "yaml", "logtape", "modules", "poll"] as const;

/** One floor variant. */
export type FloorVariant = typeof FLOOR_VARIANTS[number];

async function main(variant: string, dir: string | undefined): Promise<void> {
  if (variant === "yaml") await import("yaml");
  else if (variant === "logtape") await import("@logtape/logtape");
  else if (variant === "modules") await import("../main.ts");
  else if (variant === "poll") {
    if (!dir) throw new Error("the poll variant needs a directory");
    // Loaded here, not at the top, so the other variants stay without it.
    const { PrimaryFilePoller } = await import("../lib/primary_file.ts");
    new PrimaryFilePoller(dir, POLL_INTERVAL_MS, () => {}, Date.now).start();
  } else if (variant !== "empty") throw new Error(`unknown floor variant ${variant}`);
  // Same shape as the supervisor's JSON log lines, so the bench reads its stamp the same way.
  console.log(JSON.stringify({ "@timestamp": new Date().toISOString(), message: "floor up" }));
  // One far-off timer keeps the event loop alive without ever waking it.
  setInterval(() => {}, 2 ** 31 - 1);
}

if (import.meta.main) await main(Deno.args[0] ?? "empty", Deno.args[1]);
