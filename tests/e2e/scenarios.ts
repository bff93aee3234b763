/**
 * Shared steps of the end-to-end scenarios: a cluster with its sampler,
 * waits on the cluster's state, and a timing report each scenario prints.
 * @module
 */

import { Cluster, type Node } from "./cluster.ts";
import { type Sample, Sampler } from "./observe.ts";

/**
 * Cold start budget: LiteFS start-up and the first lease (about 1 s), the
 * supervisor's start (Deno loading its modules), Navidrome's first start with
 * every migration (about 0.5 s) and the first HTTP check. Generous for a
 * loaded 2-core CI machine.
 */
export const COLD_START_TIMEOUT_MS = 60_000;
/**
 * A crashed primary's lease is free after 2 × the session TTL (10 s) plus the
 * lock delay (1 s); the new primary's start comes on top.
 */
export const HARD_FAILOVER_TIMEOUT_MS = 60_000;
/** A graceful handoff: the old node stops, releases the lease, a replica takes it. */
export const GRACEFUL_FAILOVER_TIMEOUT_MS = 40_000;

/** A cluster under observation; {@link close} tears everything down. */
export interface Observed {
  cluster: Cluster;
  sampler: Sampler;
  /** Named instants, epoch ms, in the order they were marked. */
  marks: Map<string, number>;
  /** Stops sampling and destroys the cluster; throws if an invariant was broken. */
  close(): Promise<void>;
}

/** Starts a cluster of `nodes` and samples it from the first instant. */
export async function observed(nodes: number): Promise<Observed> {
  const cluster = await Cluster.start({ nodes, boot: false });
  const sampler = new Sampler(cluster);
  for (const n of cluster.nodes) await n.boot();
  let closed = false;
  return {
    cluster,
    sampler,
    marks: new Map([["boot", cluster.startedAt]]),
    async close() {
      if (closed) return;
      closed = true;
      try {
        await sampler.stop();
      } finally {
        await cluster.destroy();
      }
    },
  };
}

/**
 * Runs a scenario on a fresh cluster, always tears it down, and fails with
 * the nodes' log tails when the scenario or any sampled invariant fails.
 */
export async function withCluster(
  nodes: number,
  scenario: (o: Observed) => Promise<void>,
): Promise<void> {
  const o = await observed(nodes);
  let failure: unknown = null;
  try {
    await scenario(o);
  } catch (e) {
    failure = e;
  }
  await o.sampler.stop();
  const violations = o.sampler.report();
  const tails = o.cluster.nodes.map((n) => n.tail(40)).join("\n");
  console.log(
    `  invariants: ${o.sampler.samples.length} samples, max stale passing ` +
      `${o.sampler.maxStalePassingMs} ms, max Navidrome on a non-holder ` +
      `${o.sampler.maxForeignRunMs} ms, ${o.sampler.violations.length} violations`,
  );
  if (failure || violations || Deno.env.get("E2E_KEEP_LOGS") === "1") await keepLogs(o);
  await o.close();
  if (failure) {
    throw new Error(`${(failure as Error).message ?? failure}\n${tails}`, { cause: failure });
  }
  if (violations) throw new Error(`invariants broken:\n${violations}\n${tails}`);
}

/**
 * Where node logs are kept (git-ignored) when a scenario fails, or always
 * with `E2E_KEEP_LOGS=1`; the directory is printed.
 */
export const FAILED_LOGS_DIR = new URL("../../.e2e-logs/", import.meta.url).pathname;

/** Copies every node's full log out of the cluster directory before it is removed. */
async function keepLogs(o: Observed): Promise<void> {
  const dir = `${FAILED_LOGS_DIR}${new Date().toISOString().replaceAll(":", "")}`;
  await Deno.mkdir(dir, { recursive: true });
  for (const n of o.cluster.nodes) {
    await Deno.writeTextFile(`${dir}/${n.name}.log`, n.lines.join("\n"));
  }
  console.log(`  node logs kept in ${dir}`);
}

/**
 * The cluster serving from exactly one primary: one lease holder, one
 * Navidrome (on the holder), answering /ping, and exactly one passing
 * `navidrome` instance — the holder's, with its address — that answers.
 */
export function servingFromOne(s: Sample): string | null {
  const h = s.holder;
  if (!h) return null;
  const alive = Object.entries(s.nodes).filter(([, n]) => n.navidrome.length > 0);
  if (alive.length !== 1 || alive[0][0] !== h) return null;
  if (s.nodes[h].ping !== true) return null;
  if (s.passing.length !== 1 || s.passing[0] !== h || s.serving !== h) return null;
  return h;
}

/** Waits for the first sample after `after` where {@link servingFromOne} holds. */
export async function untilServing(
  o: Observed,
  opts: { timeoutMs: number; after?: number; not?: string },
): Promise<Sample> {
  return await o.sampler.until(
    (s) => {
      const h = servingFromOne(s);
      return h !== null && h !== opts.not;
    },
    { timeoutMs: opts.timeoutMs, after: opts.after, what: "one primary serving" },
  );
}

/** The node that is primary in a sample. */
export function holderNode(o: Observed, s: Sample): Node {
  return o.cluster.node(s.holder!);
}

/** Milliseconds from `from` to `to`, as "1234 ms". */
function ms(from: number, to: number): string {
  return `${String(Math.round(to - from)).padStart(6)} ms`;
}

/**
 * Prints a timing table: each step's time since `start` (the scenario's
 * trigger). Steps are printed in the order given.
 */
export function printTimings(title: string, start: number, steps: [string, number][]): void {
  const lines = steps.map(([name, at]) => `    ${name.padEnd(52)} ${ms(start, at)}`);
  console.log(`  ${title}\n${lines.join("\n")}`);
}
