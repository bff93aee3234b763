/**
 * Number formatting shared by the report and the target checks.
 * @module
 */

/** Milliseconds: one decimal below 10, whole above; `—` for no figure. */
export function ms(x: number): string {
  return Number.isNaN(x) ? "—" : Math.abs(x) < 10 ? x.toFixed(1) : String(Math.round(x));
}

/** A fraction as a whole percentage, e.g. `24 %`. */
export function pct(fraction: number): string {
  return `${Math.round(fraction * 100)} %`;
}

/**
 * `ours ÷ baseline` with two significant digits, e.g. `0.012×`; `—` when
 * either is missing or the baseline is zero (below the clock's resolution).
 */
export function ratio(ours: number, baseline: number): string {
  if (!(baseline > 0) || Number.isNaN(ours)) return "—";
  return `${Number((ours / baseline).toPrecision(2))}×`;
}
