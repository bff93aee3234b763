/**
 * Finds `NDLS_*` variables that are no setting (a typo such as
 * NDLS_STOP_TIMOUT silently keeps the default). The supervisor itself cannot
 * list its environment: its `--allow-env=NDLS_*` permission reads names it
 * asks for, never the whole set. `doctor` therefore asks `env -0` instead.
 * @module
 */

/** An unknown setting, with the known one it most likely meant. */
export interface UnknownSetting {
  name: string;
  suggestion: string | null;
}

/**
 * Names under `NDLS_` (in any case) that `known` lacks, each with the
 * closest known name (at most 3 edits).
 */
export function unknownSettings(
  names: readonly string[],
  known: readonly string[],
): UnknownSetting[] {
  const candidates = names.filter((n) => n.toUpperCase().startsWith("NDLS_") && !known.includes(n));
  return candidates.sort().map((name) => {
    let best: string | null = null;
    let bestDistance = MAX_SUGGESTION_DISTANCE + 1;
    for (const k of known) {
      // Names are case-sensitive, but a wrong case is still the likely meaning.
      const d = editDistance(name.toUpperCase(), k);
      if (d < bestDistance) [best, bestDistance] = [k, d];
    }
    return { name, suggestion: best };
  });
}

/** More edits than this and a "did you mean" is a guess, not a help. */
const MAX_SUGGESTION_DISTANCE = 3;

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length];
}

/**
 * The names in this process's environment, read through `env -0` (NUL
 * separated, so values with line breaks cannot fake a name). Null when
 * `env` cannot be run.
 */
export async function environmentNames(): Promise<string[] | null> {
  try {
    const out = await new Deno.Command("env", { args: ["-0"], stdin: "null", stderr: "null" })
      .output();
    if (!out.success) return null;
    return new TextDecoder().decode(out.stdout).split("\0").filter((e) => e.includes("="))
      .map((e) => e.slice(0, e.indexOf("=")));
  } catch {
    return null;
  }
}
