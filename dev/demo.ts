/**
 * `deno task demo`: the whole job on one machine with nothing but Deno.
 *
 * Three simulated nodes, each a real supervisor process (with exactly the
 * compile task's permissions) whose LiteFS mount is a temporary directory and
 * whose LiteFS API is a simulator; one shared Consul agent double; the
 * stand-in app (or a real Navidrome) as the supervised program. This process
 * plays LiteFS's lease: it moves leadership every `--interval`, and shows
 * what the supervisors make of it. Ctrl-C or `--duration` stops everything
 * and removes every trace.
 * @module
 */

import { ConsulDouble } from "../tests/support/consul_double.ts";
import { processAlive } from "../tests/support/wait.ts";
import { isExecutableFile, resolveExecutable } from "../lib/cli.ts";
import { DEMO_USAGE, type DemoOptions, DemoUsageError, parseDemoArgs } from "./demo_args.ts";
import {
  type AppSpec,
  DEMO_STOP_TIMEOUT_MS,
  DemoNode,
  type NodeEvent,
  STATUS_POLL_MS,
} from "./demo_node.ts";
import { clock, type NodeRow, Screen } from "./demo_view.ts";
import { onSignals } from "./signals.ts";

/** Node names; the first starts as primary. */
const NODE_NAMES = ["node-1", "node-2", "node-3"];
/** How often the live table is redrawn. */
const RENDER_MS = 100;
/**
 * Longest a handover waits for the old primary's app to be gone before the
 * next node takes the lease anyway: the app's stop timeout plus slack.
 */
const HANDOVER_WAIT_MS = DEMO_STOP_TIMEOUT_MS + 3000;
/** Time the supervisors get to start before the first move, at most. */
const STARTUP_WAIT_MS = 30_000;
/** Consul service name the supervisors register (the default). */
const SERVICE_NAME = "navidrome";

const STAND_IN_APP = new URL("../tests/support/stand_in_app.ts", import.meta.url).pathname;

/** A change the controller made, waiting for the supervisor's answer. */
interface Pending {
  want: "started" | "stopping";
  at: number;
}

/** Reaction times measured so far, by kind. */
interface Reactions {
  start: number[];
  stop: number[];
}

/** Picks the supervised program: `--navidrome`, else `navidrome` on PATH, else the stand-in. */
export function chooseApp(opts: DemoOptions, path: string | undefined): AppSpec {
  let binary: string | null = null;
  if (opts.navidrome !== null) {
    binary = resolveExecutable(opts.navidrome, path, isExecutableFile);
  } else if (!opts.standIn) {
    try {
      binary = resolveExecutable("navidrome", path, isExecutableFile);
    } catch {
      binary = null;
    }
  }
  if (binary === null) {
    return {
      label: "stand-in app (tests/support/stand_in_app.ts)",
      command: [Deno.execPath(), "run", "--allow-all", "--quiet", STAND_IN_APP],
      env: (port) => ({ APP_PORT: String(port) }),
    };
  }
  return {
    label: `Navidrome ${binary}`,
    command: [binary],
    // No LiteFS here: each node keeps its own database under its temp dir.
    env: (port, dir) => ({
      ND_PORT: String(port),
      ND_ADDRESS: "127.0.0.1",
      ND_DATAFOLDER: `${dir}/navidrome-data`,
      ND_MUSICFOLDER: `${dir}/music`,
      ND_LOGLEVEL: "warn",
      ND_ENABLEINSIGHTSCOLLECTOR: "false",
    }),
  };
}

/** Median of a non-empty list. */
function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function stats(xs: readonly number[]): string {
  if (xs.length === 0) return "none measured";
  return `min ${Math.min(...xs)}ms, median ${Math.round(median(xs))}ms, max ${
    Math.max(...xs)
  }ms (n=${xs.length})`;
}

/** Runs the demo; resolves with the exit code. */
export async function demo(args: readonly string[]): Promise<number> {
  let opts: DemoOptions;
  try {
    opts = parseDemoArgs(args);
  } catch (e) {
    if (!(e instanceof DemoUsageError)) throw e;
    console.error(`demo: ${e.message}`);
    return 2;
  }
  if (opts.help) {
    console.log(DEMO_USAGE);
    return 0;
  }
  let app: AppSpec;
  try {
    app = chooseApp(opts, Deno.env.get("PATH"));
  } catch (e) {
    console.error(`demo: --navidrome: ${e instanceof Error ? e.message : String(e)}`);
    return 2;
  }

  const interactive = Deno.stdout.isTerminal();
  const screen = new Screen(interactive, Deno.env.get("NO_COLOR") === undefined);
  const log = (line: string, at = Date.now()) => screen.log(`${clock(at)}  ${line}`);
  const started = Date.now();

  let stopping = false;
  // A second Ctrl-C while stopping: kill instead of waiting.
  const hurry = new AbortController();
  const stopRequested = Promise.withResolvers<string>();
  const requestStop = (why: string) => {
    if (stopping) {
      if (!hurry.signal.aborted) log(`${why} again: killing everything now`);
      hurry.abort();
      return;
    }
    stopping = true;
    stopRequested.resolve(why);
  };
  const removeSignals = onSignals(["SIGINT", "SIGTERM", "SIGHUP"], (sig) => requestStop(sig));

  const root = await Deno.makeTempDir({ prefix: "ndls-demo-" });
  let consul: ConsulDouble | null = null;
  const nodes: DemoNode[] = [];
  const pending = new Map<string, Pending>();
  const lastReaction = new Map<string, string>();
  const reactions: Reactions = { start: [], stop: [] };
  const allPorts: number[] = [];
  let primaryIndex = 0;
  let moves = 0;
  let violations = 0;
  let renderTimer: ReturnType<typeof setInterval> | undefined;
  let moveTimer: ReturnType<typeof setTimeout> | undefined;
  let durationTimer: ReturnType<typeof setTimeout> | undefined;
  let restoreKeys = () => {};
  let leftBehind: string[] = [];

  const onEvent = (node: DemoNode, e: NodeEvent) => {
    switch (e.kind) {
      case "role":
        log(`${node.name}: role ${e.from} -> ${e.to} (${e.cause}: ${e.reason})`, e.at);
        return;
      case "started":
      case "stopping": {
        const p = pending.get(node.name);
        let reaction = "";
        if (p && p.want === e.kind && e.at >= p.at) {
          const ms = e.at - p.at;
          pending.delete(node.name);
          (e.kind === "started" ? reactions.start : reactions.stop).push(ms);
          lastReaction.set(node.name, `${e.kind === "started" ? "start" : "stop"} ${ms}ms`);
          reaction = `, ${ms}ms after the leadership change`;
        }
        const what = e.kind === "started" ? "started app" : "stopping app";
        log(`${node.name}: ${what}, pid ${e.pid}${reaction}`, e.at);
        return;
      }
      case "listening":
        log(`${node.name}: supervisor status on http://127.0.0.1:${e.port}/status`, e.at);
        return;
      case "problem":
        log(`${node.name}: supervisor says: ${e.message}`, e.at);
        return;
      case "exited":
        if (!stopping) {
          log(`${node.name}: supervisor exited unexpectedly (${e.signal ?? `code ${e.code}`})`);
        }
        return;
    }
  };

  const consulState = (name: string): string => {
    if (!consul) return "absent";
    const id = `${SERVICE_NAME}-${name}`;
    if (!consul.services().some((s) => s.ID === id)) return "absent";
    const statuses = consul.checks().filter((c) => c.ServiceID === id).map((c) => c.Status);
    if (statuses.includes("critical")) return "critical";
    if (statuses.includes("warning")) return "warning";
    return "passing";
  };

  const rows = (): NodeRow[] =>
    nodes.map((n) => ({
      node: n.name,
      role: n.exit ? `exited(${n.exit.signal ?? n.exit.code})` : n.role?.name ?? "starting",
      appPid: n.appPid,
      consul: consulState(n.name),
      lastTransition: n.role?.since ?? null,
      reaction: lastReaction.get(n.name) ?? null,
    }));

  const render = () => {
    const r = rows();
    const running = r.filter((x) => x.appPid !== null);
    if (running.length > 1) {
      violations++;
      log(`!! ${running.length} apps running at once: ${running.map((x) => x.node).join(", ")}`);
    }
    const footer = opts.durationMs !== null
      ? `leadership moves every ${opts.intervalMs / 1000}s; stopping after ${
        opts.durationMs / 1000
      }s`
      : `leadership moves every ${opts.intervalMs / 1000}s · space: move now · q or Ctrl-C: quit`;
    screen.show(Date.now() - started, r, footer);
  };

  /** Waits until `pred` holds, the deadline passes or a stop is requested. */
  const until = async (pred: () => boolean, ms: number): Promise<boolean> => {
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (stopping || Date.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, STATUS_POLL_MS / 4));
    }
    return true;
  };

  let moving: Promise<void> | null = null;
  /**
   * Plays one lease handover the way LiteFS does it: the old primary loses
   * the lease first (a replica that knows no primary, as during an election);
   * only once its app is gone does the next node take the lease, the way
   * LiteFS's lease keeps a second primary out. Then every other node follows
   * the new primary.
   */
  const move = (why: string) => {
    if (moving || stopping) return;
    clearTimeout(moveTimer);
    moving = (async () => {
      const old = nodes[primaryIndex];
      const next = nodes[(primaryIndex + 1) % nodes.length];
      moves++;
      log(`leadership: ${old.name} loses the lease (${why})`);
      const t0 = Date.now();
      pending.set(old.name, { want: "stopping", at: t0 });
      old.sim.setReplica(null);
      const gone = await until(
        () => old.exit !== null || (old.statusSentAt > t0 && old.appPid === null),
        HANDOVER_WAIT_MS,
      );
      if (stopping) return;
      if (!gone) log(`!! ${old.name} still runs its app; moving on`);
      const t1 = Date.now();
      pending.set(next.name, { want: "started", at: t1 });
      next.sim.setPrimary();
      log(`leadership: ${next.name} takes the lease`);
      for (const n of nodes) if (n !== next) n.sim.setReplica(next.name);
      primaryIndex = nodes.indexOf(next);
    })().finally(() => {
      moving = null;
      if (!stopping) moveTimer = setTimeout(() => move("interval"), opts.intervalMs);
    });
  };

  try {
    consul = await ConsulDouble.start();
    allPorts.push(consul.port);
    screen.log(
      `demo: ${NODE_NAMES.length} nodes, leadership moves every ${opts.intervalMs / 1000}s` +
        (opts.durationMs !== null ? `, stopping after ${opts.durationMs / 1000}s` : "") +
        (interactive ? " (space: move now, q or Ctrl-C: quit)" : ""),
    );
    screen.log(`demo: app ${app.label}`);
    screen.log(`demo: consul double ${consul.url}, temp dir ${root}`);
    for (const [i, name] of NODE_NAMES.entries()) {
      if (stopping) break;
      const dir = `${root}/${name}`;
      await Deno.mkdir(`${dir}/music`, { recursive: true });
      const node = await DemoNode.start({
        name,
        dir,
        consulUrl: consul.url,
        app,
        primary: i === 0,
        primaryName: i === 0 ? null : NODE_NAMES[0],
        onEvent,
      });
      nodes.push(node);
      screen.log(
        `demo: ${name} supervisor pid ${node.proc.pid}, mount ${node.mountDir}, LiteFS API ${node.sim.url}, app port ${node.appPort}`,
      );
    }
    renderTimer = setInterval(render, RENDER_MS);
    if (opts.durationMs !== null) {
      durationTimer = setTimeout(() => requestStop("duration reached"), opts.durationMs);
    }
    if (interactive && Deno.stdin.isTerminal()) restoreKeys = readKeys(move, requestStop);

    // The first move waits for the cluster to be up, so the first transition is a real one.
    await until(() => nodes.every((n) => n.status !== null || n.exit !== null), STARTUP_WAIT_MS);
    if (!stopping) moveTimer = setTimeout(() => move("interval"), opts.intervalMs);

    const why = await stopRequested.promise;
    log(`stopping (${why}): SIGTERM to every supervisor`);
    clearTimeout(moveTimer);
    clearTimeout(durationTimer);
    await moving;
    render();
  } finally {
    stopping = true;
    restoreKeys();
    clearTimeout(moveTimer);
    clearTimeout(durationTimer);
    const outcomes = await Promise.all(
      nodes.map(async (n) => [n, await n.stop(DEMO_STOP_TIMEOUT_MS + 2000, hurry.signal)] as const),
    );
    clearInterval(renderTimer);
    render();
    for (const [n, how] of outcomes) {
      const code = n.exit ? (n.exit.signal ?? `exit ${n.exit.code}`) : "?";
      log(`${n.name}: supervisor ${how === "clean" ? "stopped cleanly" : how} (${code})`);
    }
    for (const n of nodes) {
      await n.dispose();
      allPorts.push(...n.ports());
    }
    const services = consul?.services().length ?? 0;
    await consul?.stop();
    await Deno.remove(root, { recursive: true }).catch(() => {});
    removeSignals();

    leftBehind = await leftovers(nodes, allPorts, root);
    log(
      `moves: ${moves}; reaction from leadership change to the supervisor's action: ` +
        `start ${stats(reactions.start)}; stop ${stats(reactions.stop)}`,
    );
    log(`consul: ${services} service(s) registered at the end`);
    const procs = nodes.length + new Set(nodes.flatMap((n) => [...n.appPids])).size;
    log(
      leftBehind.length === 0
        ? `left behind: nothing (${procs} processes gone, ${allPorts.length} ports closed, ${root} removed)`
        : `left behind: ${leftBehind.join("; ")}`,
    );
    screen.close();
  }
  return leftBehind.length === 0 && violations === 0 ? 0 : 1;
}

/** What is still there after the cleanup; empty when nothing is. */
async function leftovers(nodes: DemoNode[], ports: number[], root: string): Promise<string[]> {
  const out: string[] = [];
  for (const n of nodes) {
    if (processAlive(n.proc.pid)) out.push(`${n.name} supervisor pid ${n.proc.pid}`);
    for (const pid of n.appPids) if (processAlive(pid)) out.push(`${n.name} app pid ${pid}`);
  }
  for (const port of ports) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      out.push(`port ${port} still open`);
    } catch {
      // Refused: closed, as it should be.
    }
  }
  try {
    await Deno.stat(root);
    out.push(`${root} still exists`);
  } catch {
    // Removed.
  }
  return out;
}

/**
 * Reads single key presses (cbreak mode keeps Ctrl-C a signal): space, n or
 * Enter moves leadership, q quits. Returns a function restoring the terminal.
 */
function readKeys(move: (why: string) => void, quit: (why: string) => void): () => void {
  Deno.stdin.setRaw(true, { cbreak: true });
  let done = false;
  (async () => {
    const buf = new Uint8Array(16);
    while (!done) {
      const n = await Deno.stdin.read(buf).catch(() => null);
      if (n === null || done) return;
      for (const b of buf.subarray(0, n)) {
        const key = String.fromCharCode(b);
        if (key === " " || key === "n" || key === "\r" || key === "\n") move("key press");
        else if (key === "q" || b === 3) quit("q pressed");
      }
    }
  })();
  return () => {
    if (done) return;
    done = true;
    try {
      Deno.stdin.setRaw(false);
    } catch {
      // Not a terminal any more.
    }
  };
}

if (import.meta.main) {
  // Exit explicitly: a pending read of the terminal would keep the process alive.
  Deno.exit(await demo(Deno.args));
}
