/**
 * Order statistics for latency samples.
 * @module
 */

/** p50, p99 and max of a set of samples, with how many there were. */
export interface Summary {
  n: number;
  p50: number;
  p99: number;
  max: number;
}

/**
 * The nearest-rank percentile: the smallest sample with at least `p` percent
 * of the samples at or below it. No interpolation, so every figure reported
 * is a latency that really happened.
 */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** Summarises samples; NaN fields when there are none. */
export function summarize(samples: readonly number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    n: sorted.length,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    max: sorted.length ? sorted[sorted.length - 1] : NaN,
  };
}

/** The median of a small set (start-up and stop runs). */
export function median(samples: readonly number[]): number {
  return percentile([...samples].sort((a, b) => a - b), 50);
}
