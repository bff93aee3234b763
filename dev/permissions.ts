/**
 * The permission flags `deno task compile` bakes into the binary, read from
 * deno.json so tests, the demo, `deno task doctor` and the benchmarks run the
 * supervisor with exactly the same permissions as production: the compile
 * task stays the single place where they are written down.
 * @module
 */

import denoJson from "../deno.json" with { type: "json" };

/** The `--allow-*` / `--deny-*` flags of the compile task, in order. */
export function compilePermissionFlags(): string[] {
  const flags = denoJson.tasks.compile.split(/\s+/).filter((t) => /^--(allow|deny)-/.test(t));
  if (flags.length === 0) throw new Error("deno.json compile task has no permission flags");
  return flags;
}

/** Absolute path of the supervisor's entry point. */
export const MAIN_TS: string = new URL("../main.ts", import.meta.url).pathname;

/** The command that runs the supervisor from source with the production permissions. */
export function supervisorCommand(): string[] {
  return [Deno.execPath(), "run", "--quiet", ...compilePermissionFlags(), MAIN_TS];
}
