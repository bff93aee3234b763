/**
 * Samples the whole cluster every {@link SAMPLE_INTERVAL_MS} and checks the
 * product's invariants at every sample:
 * - never two Navidromes alive (on the whole cluster, at any instant);
 * - never a passing `navidrome` registration for a node that does not hold
 *   the LiteFS lease for longer than {@link STALE_PASSING_BOUND_MS};
 * - never a Navidrome running on a node that does not hold the lease for
 *   longer than {@link FOREIGN_RUN_BOUND_MS}.
 *
 * "Primary" is the holder of LiteFS's lease in Consul: the one fact the whole
 * cluster agrees on. Processes are found in /proc (by the network namespace
 * they run in), Consul's view is read from the double, and each node's LiteFS
 * API, `.primary` and Navidrome `/ping` are probed over the bridge.
 * @module
 */

import { type Cluster, type LiteFsInfo, withTimeout } from "./cluster.ts";

/** Sampling period. */
export const SAMPLE_INTERVAL_MS = 100;
/**
 * How long a non-holder may keep a passing registration. By design never:
 * the supervisor deregisters before it stops Navidrome and exits, LiteFS
 * releases the lease only after that, and a crashed primary's checks go
 * critical (TTL 15 s, HTTP 10 s + 2 s) before Consul frees its lease (2 × 10 s
 * session TTL + 1 s lock delay). The bound only absorbs sampling.
 */
export const STALE_PASSING_BOUND_MS = 1000;
/** How long a Navidrome may run on a node that does not hold the lease; same reasoning. */
export const FOREIGN_RUN_BOUND_MS = 1000;
/** Probes of the node APIs and of /ping: a local bridge answers in milliseconds. */
const PROBE_TIMEOUT_MS = 300;
/** Consul service name of the primary (job.nomad keeps the supervisor's default). */
const SERVICE = "navidrome";
/** Where Navidrome answers on each node (job.nomad's `navidrome` port). */
const NAVIDROME_PORT = 4533;

/** One node at one instant. */
export interface NodeState {
  /** The container (LiteFS) is running. */
  up: boolean;
  /** Pids of Navidrome server processes (its scanner subprocess is not counted). */
  navidrome: number[];
  /** `/info`; null when it did not answer; undefined until probed. */
  info?: LiteFsInfo | null;
  /** Content of `.primary`; null when absent or unreadable; undefined until probed. */
  dotPrimary?: string | null;
  /** Navidrome answered `/ping` on the node's address; undefined until probed. */
  ping?: boolean;
}

/** The cluster at one instant. */
export interface Sample {
  /** Epoch milliseconds. */
  at: number;
  nodes: Record<string, NodeState>;
  /** Lease holder (hostname in the lease key), or null. */
  holder: string | null;
  /** Nodes with a `navidrome` registration (any health). */
  registered: string[];
  /** Nodes with a passing `navidrome` instance. */
  passing: string[];
  /** Address:port of each passing instance, by node. */
  passingAddress: Record<string, string>;
  /** The node whose passing instance answered /ping (what a client gets); undefined until probed. */
  serving?: string | null;
  /** True once every probe of this sample has answered or timed out. */
  complete: boolean;
}

/** An invariant broken at one sample. */
export interface Violation {
  at: number;
  what: string;
}

/** Background sampler of a cluster; see the module doc. */
export class Sampler {
  readonly samples: Sample[] = [];
  readonly violations: Violation[] = [];
  /** Longest time a non-holder kept a passing registration, in ms. */
  maxStalePassingMs = 0;
  /** Longest time a Navidrome ran on a non-holder, in ms. */
  maxForeignRunMs = 0;
  #cluster: Cluster;
  #running = true;
  #loop: Promise<void>;
  #stalePassingSince = new Map<string, number>();
  #foreignRunSince = new Map<string, number>();
  #netnsInode = new Map<number, string>();
  #busy = new Set<string>();

  constructor(cluster: Cluster) {
    this.#cluster = cluster;
    for (const n of cluster.nodes) {
      this.#netnsInode.set(Deno.statSync(`/run/netns/${n.netns}`).ino!, n.name);
    }
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    let next = Date.now();
    while (this.#running) {
      this.#take();
      next += SAMPLE_INTERVAL_MS;
      // A late tick is not made up for: samples stay at least one period apart.
      next = Math.max(next, Date.now());
      await new Promise((resolve) => setTimeout(resolve, next - Date.now()));
    }
  }

  /** Stops sampling and waits for the last probes. */
  async stop(): Promise<void> {
    this.#running = false;
    await this.#loop;
    await this.until((s) => s.complete, { timeoutMs: 2000, what: "last probes" }).catch(() => {});
  }

  /** The Navidrome server pids of every node, from /proc. */
  #navidromes(): Map<string, number[]> {
    const out = new Map<string, number[]>(this.#cluster.nodes.map((n) => [n.name, []]));
    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      try {
        const argv = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).split("\0");
        if (argv[0] !== "/app/navidrome" || argv.includes("scan")) continue;
        const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
        if (stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) continue;
        const ns = /net:\[(\d+)\]/.exec(Deno.readLinkSync(`/proc/${entry.name}/ns/net`));
        const node = ns && this.#netnsInode.get(Number(ns[1]));
        if (node) out.get(node)!.push(Number(entry.name));
      } catch {
        // exited while being read
      }
    }
    return out;
  }

  #take(): void {
    const at = Date.now();
    const consul = this.#cluster.consul;
    const navidromes = this.#navidromes();
    const passing = consul.passingInstances(SERVICE);
    const nodeOf = (s: { Meta: Record<string, string> }) => s.Meta.litefs_hostname ?? "?";
    const sample: Sample = {
      at,
      nodes: {},
      holder: this.#cluster.leaseHolder(),
      registered: consul.services().filter((s) => s.Service === SERVICE).map(nodeOf),
      passing: passing.map(nodeOf),
      passingAddress: Object.fromEntries(passing.map((s) => [nodeOf(s), `${s.Address}:${s.Port}`])),
      complete: false,
    };
    for (const n of this.#cluster.nodes) {
      sample.nodes[n.name] = { up: n.pid !== null, navidrome: navidromes.get(n.name) ?? [] };
    }
    this.samples.push(sample);
    this.#check(sample);
    this.#probe(sample).then(() => sample.complete = true);
  }

  /** Fills the sample's network and file probes; a node still busy with an older probe is skipped. */
  async #probe(sample: Sample): Promise<void> {
    const jobs: Promise<void>[] = [];
    const once = (key: string, job: () => Promise<void>) => {
      if (this.#busy.has(key)) return;
      this.#busy.add(key);
      jobs.push(job().finally(() => this.#busy.delete(key)));
    };
    for (const n of this.#cluster.nodes) {
      const state = sample.nodes[n.name];
      once(`${n.name}/info`, async () => {
        state.info = await n.info(PROBE_TIMEOUT_MS);
      });
      once(`${n.name}/.primary`, async () => {
        const bytes = await n.readFile("/data/.primary", PROBE_TIMEOUT_MS);
        state.dotPrimary = bytes ? new TextDecoder().decode(bytes).trim() : null;
      });
      if (state.navidrome.length > 0) {
        once(`${n.name}/ping`, async () => {
          state.ping = await ping(`${n.ip}:${NAVIDROME_PORT}`);
        });
      }
    }
    once("serving", async () => {
      sample.serving = null;
      for (const [node, address] of Object.entries(sample.passingAddress)) {
        if (await ping(address)) sample.serving = node;
      }
    });
    await Promise.all(jobs);
  }

  #check(s: Sample): void {
    const alive = Object.entries(s.nodes).filter(([, n]) => n.navidrome.length > 0);
    if (alive.length > 1 || alive.some(([, n]) => n.navidrome.length > 1)) {
      this.violations.push({
        at: s.at,
        what: `more than one Navidrome alive: ${
          alive.map(([name, n]) => `${name} pids ${n.navidrome.join(",")}`).join("; ")
        }`,
      });
    }
    this.maxStalePassingMs = Math.max(
      this.maxStalePassingMs,
      this.#bounded(this.#stalePassingSince, s, s.passing, "passing registration"),
    );
    this.maxForeignRunMs = Math.max(
      this.maxForeignRunMs,
      this.#bounded(this.#foreignRunSince, s, alive.map(([name]) => name), "Navidrome running"),
    );
  }

  /** Tracks how long each node in `nodes` has not been the holder; records a violation past the bound. */
  #bounded(since: Map<string, number>, s: Sample, nodes: string[], what: string): number {
    const bound = what === "passing registration" ? STALE_PASSING_BOUND_MS : FOREIGN_RUN_BOUND_MS;
    let longest = 0;
    for (const name of this.#cluster.nodes.map((n) => n.name)) {
      if (!nodes.includes(name) || s.holder === name) {
        since.delete(name);
        continue;
      }
      const from = since.get(name) ?? s.at;
      since.set(name, from);
      longest = Math.max(longest, s.at - from);
      if (s.at - from > bound) {
        this.violations.push({
          at: s.at,
          what: `${what} on ${name} while the lease holder is ${s.holder} for ${s.at - from}ms`,
        });
      }
    }
    return longest;
  }

  /**
   * The first complete sample taken at or after `after` (epoch ms, default
   * now) for which `pred` holds; waits for it until the deadline.
   */
  async until(
    pred: (s: Sample) => boolean,
    opts: { timeoutMs: number; what: string; after?: number },
  ): Promise<Sample> {
    const after = opts.after ?? Date.now();
    const deadline = Date.now() + opts.timeoutMs;
    let i = this.samples.findIndex((s) => s.at >= after);
    if (i < 0) i = this.samples.length;
    for (;;) {
      while (i < this.samples.length && this.samples[i].complete) {
        if (pred(this.samples[i])) return this.samples[i];
        i++;
      }
      if (Date.now() > deadline) {
        throw new Error(`timed out after ${opts.timeoutMs}ms waiting for ${opts.what}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** The complete samples taken in `[from, to]`. */
  between(from: number, to: number = Infinity): Sample[] {
    return this.samples.filter((s) => s.complete && s.at >= from && s.at <= to);
  }

  /** One line per violation, or "" when there is none. */
  report(): string {
    return this.violations.map((v) => `  ${new Date(v.at).toISOString()} ${v.what}`).join("\n");
  }
}

/** True when Navidrome answers `/ping` with 200 at `address` (host:port). */
async function ping(address: string): Promise<boolean> {
  const attempt = fetch(`http://${address}/ping`, {
    signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
  }).then(async (res) => {
    await res.body?.cancel();
    return res.status === 200;
  });
  return await withTimeout(attempt, PROBE_TIMEOUT_MS, false);
}
