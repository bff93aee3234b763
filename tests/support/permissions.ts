/**
 * The permission flags `deno task compile` bakes into the binary, read from
 * deno.json so tests, the demo and the benchmarks run the supervisor with
 * exactly the same permissions as production.
 * @module
 */

import denoJson from "../../deno.json" with { type: "json" };

/** The `--allow-*` / `--deny-*` flags of the compile task, in order. */
export function compilePermissionFlags(): string[] {
  const flags = denoJson.tasks.compile.split(/\s+/).filter((t) => /^--(allow|deny)-/.test(t));
  if (flags.length === 0) throw new Error("deno.json compile task has no permission flags");
  return flags;
}

/** Absolute path of the supervisor's entry point. */
export const MAIN_TS = new URL("../../main.ts", import.meta.url).pathname;

/** Absolute path of the stand-in app. */
export const STAND_IN_APP = new URL("./stand_in_app.ts", import.meta.url).pathname;

/** The command that runs the supervisor from source with the production permissions. */
export function supervisorCommand(): string[] {
  return [Deno.execPath(), "run", "--quiet", ...compilePermissionFlags(), MAIN_TS];
}
