/**
 * Go-style durations ("250ms", "10s", "1m30s"), the notation LiteFS, Consul and
 * Nomad already use, so operators write timings the same way everywhere.
 * @module
 */

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/y;

/**
 * Parses a duration such as `250ms`, `10s`, `1m30s` into milliseconds.
 * Returns `null` when the text is not a duration (bare numbers included: a
 * unit-less "10" is ambiguous, so it is refused rather than guessed).
 */
export function parseDuration(text: string): number | null {
  const s = text.trim();
  if (s === "") return null;
  if (s === "0") return 0;
  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < s.length) {
    const start = PART.lastIndex;
    const m = PART.exec(s);
    if (!m || m.index !== start) return null;
    total += Number(m[1]) * UNIT_MS[m[2]];
  }
  return Math.round(total);
}

/** Formats milliseconds the way {@link parseDuration} reads them, e.g. `1.5s`, `250ms`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${Number((ms / 1000).toFixed(3))}s`;
  const m = Math.floor(ms / 60_000);
  const rest = ms - m * 60_000;
  return rest === 0 ? `${m}m` : `${m}m${formatDuration(rest)}`;
}

/** Formats milliseconds as Consul's API expects durations: whole milliseconds with a unit. */
export function consulDuration(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}
