/**
 * Counters and a latency histogram the supervisor keeps about itself, and
 * their Prometheus text rendering for `/metrics`.
 * @module
 */

import type { ConsulErrorKind } from "./consul_agent.ts";
import type { RoleKind } from "./role.ts";

/**
 * Histogram buckets (seconds) for reaction latency: from the event-stream case
 * (milliseconds) through the poll case (one poll interval) to a slow Consul.
 */
export const REACTION_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** The supervisor's own measurements. */
export class Metrics {
  /** Role changes seen, by the role entered. */
  readonly transitions: Record<RoleKind, number> = { primary: 0, replica: 0, unknown: 0 };
  /** Unexpected child exits that led to a restart or the give-up. */
  childRestarts = 0;
  /** Failed Consul requests by kind. */
  readonly consulErrors: Record<ConsulErrorKind, number> = {
    denied: 0,
    rejected: 0,
    server: 0,
    unreachable: 0,
    timeout: 0,
  };
  readonly #bucketCounts = REACTION_BUCKETS_S.map(() => 0);
  #reactionCount = 0;
  #reactionSum = 0;

  /** Records one reaction (leadership change to first action), in milliseconds. */
  observeReaction(ms: number): void {
    const s = ms / 1000;
    this.#reactionCount++;
    this.#reactionSum += s;
    REACTION_BUCKETS_S.forEach((b, i) => {
      if (s <= b) this.#bucketCounts[i]++;
    });
  }

  /** Number of reactions observed so far. */
  get reactions(): number {
    return this.#reactionCount;
  }

  /** Prometheus text exposition (format 0.0.4). */
  render(role: RoleKind, childRunning: boolean): string {
    const lines: string[] = [];
    const metric = (name: string, type: string, help: string) =>
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    metric("ndls_role", "gauge", "1 for the role this node currently has.");
    for (const r of ["primary", "replica", "unknown"] as const) {
      lines.push(`ndls_role{role="${r}"} ${r === role ? 1 : 0}`);
    }
    metric("ndls_child_running", "gauge", "1 while Navidrome runs under this supervisor.");
    lines.push(`ndls_child_running ${childRunning ? 1 : 0}`);
    metric("ndls_transitions_total", "counter", "Role changes, by the role entered.");
    for (const [r, n] of Object.entries(this.transitions)) {
      lines.push(`ndls_transitions_total{to="${r}"} ${n}`);
    }
    metric("ndls_child_restarts_total", "counter", "Unexpected Navidrome exits.");
    lines.push(`ndls_child_restarts_total ${this.childRestarts}`);
    metric("ndls_consul_errors_total", "counter", "Failed Consul agent requests, by kind.");
    for (const [k, n] of Object.entries(this.consulErrors)) {
      lines.push(`ndls_consul_errors_total{kind="${k}"} ${n}`);
    }
    metric(
      "ndls_reaction_seconds",
      "histogram",
      "From the supervisor seeing a leadership change to its first action (start, stop, register, deregister).",
    );
    REACTION_BUCKETS_S.forEach((b, i) => {
      lines.push(`ndls_reaction_seconds_bucket{le="${b}"} ${this.#bucketCounts[i]}`);
    });
    lines.push(`ndls_reaction_seconds_bucket{le="+Inf"} ${this.#reactionCount}`);
    lines.push(`ndls_reaction_seconds_sum ${this.#reactionSum}`);
    lines.push(`ndls_reaction_seconds_count ${this.#reactionCount}`);
    return lines.join("\n") + "\n";
  }
}
