/**
 * One simulated node of the demo: a temporary directory as its LiteFS mount,
 * a LiteFS API simulator, and a real supervisor process (run with exactly the
 * compile task's permissions) supervising the app. The node reads the
 * supervisor's JSON log lines for precise timings and polls its `/status`.
 * @module
 */

import { abortableDelay } from "../lib/delay.ts";
import { LiteFsSim } from "../tests/support/litefs_sim.ts";
import { freePort, processAlive } from "../tests/support/wait.ts";
import { supervisorCommand } from "./permissions.ts";

/** How often `/status` is read: fine enough for a table a human watches. */
export const STATUS_POLL_MS = 100;
/**
 * Navidrome's stop timeout in the demo: shorter than production's 10 s so a
 * stuck app does not stall Ctrl-C, longer than any real Navidrome shutdown.
 */
export const DEMO_STOP_TIMEOUT_MS = 5000;

/** The program the supervisors run as "Navidrome". */
export interface AppSpec {
  /** Shown in the header. */
  label: string;
  /** Command and arguments. */
  command: string[];
  /** Extra environment for a node whose app listens on `port` and may use `dir`. */
  env(port: number, dir: string): Record<string, string>;
}

/** Something a node's supervisor reported, in its own words and time. */
export type NodeEvent =
  | { kind: "role"; at: number; from: string; to: string; cause: string; reason: string }
  | { kind: "started"; at: number; pid: number }
  | { kind: "stopping"; at: number; pid: number }
  | { kind: "listening"; at: number; port: number }
  | { kind: "problem"; at: number; message: string }
  | { kind: "exited"; at: number; code: number; signal: string | null };

/** The fields of the supervisor's `/status` the demo shows. */
export interface NodeStatus {
  role: string;
  roleSince: string;
  reason: string;
  child: { pid: number | null; running: boolean; ready: boolean };
  restarts: number;
}

/** How to start a {@link DemoNode}. */
export interface DemoNodeOptions {
  name: string;
  /** The node's own directory (created by the caller, removed by the caller). */
  dir: string;
  consulUrl: string;
  app: AppSpec;
  /** Start as primary; otherwise a replica of `primaryName`. */
  primary: boolean;
  primaryName: string | null;
  onEvent: (node: DemoNode, e: NodeEvent) => void;
}

/** One node: simulator + supervisor process. */
export class DemoNode {
  /** Node (and LiteFS lease) hostname. */
  readonly name: string;
  /** The directory standing in for the LiteFS FUSE mount. */
  readonly mountDir: string;
  /** Port the app listens on. */
  readonly appPort: number;
  /** This node's LiteFS API simulator. */
  readonly sim: LiteFsSim;
  /** The supervisor process. */
  readonly proc: Deno.ChildProcess;
  /** Every app pid the supervisor reported starting. */
  readonly appPids: Set<number> = new Set();
  /** Port of the supervisor's status listener, once it said so. */
  statusPort: number | null = null;
  /**
   * The role the supervisor last logged entering, and when. Logged before it
   * acts on it, so the table never shows a registration newer than the role
   * beside it (the `/status` poll can lag by one interval).
   */
  role: { name: string; since: number } | null = null;
  /** The newest `/status` answer. */
  status: NodeStatus | null = null;
  /** When the request behind {@link status} was sent (epoch ms). */
  statusSentAt = 0;
  /** The supervisor's exit status, once it has exited. */
  exit: Deno.CommandStatus | null = null;

  readonly #onEvent: (node: DemoNode, e: NodeEvent) => void;
  readonly #pumps: Promise<void>[] = [];
  readonly #poll = new AbortController();
  // No idle keep-alive connections: nothing may hold the supervisor's listener open at exit.
  readonly #client = Deno.createHttpClient({ poolMaxIdlePerHost: 0 });
  #polling: Promise<void> = Promise.resolve();

  private constructor(
    opts: DemoNodeOptions,
    init: { mountDir: string; appPort: number; sim: LiteFsSim; proc: Deno.ChildProcess },
  ) {
    this.name = opts.name;
    this.mountDir = init.mountDir;
    this.appPort = init.appPort;
    this.sim = init.sim;
    this.proc = init.proc;
    this.#onEvent = opts.onEvent;
    for (const stream of [init.proc.stdout, init.proc.stderr]) {
      this.#pumps.push(this.#readLines(stream));
    }
    init.proc.status.then((s) => {
      this.exit = s;
      this.#onEvent(this, { kind: "exited", at: Date.now(), code: s.code, signal: s.signal });
    });
    this.#polling = this.#pollStatus();
  }

  /** Creates the mount, starts the simulator and spawns the supervisor. */
  static async start(opts: DemoNodeOptions): Promise<DemoNode> {
    const mountDir = `${opts.dir}/mount`;
    const sim = await LiteFsSim.start({
      mountDir,
      hostname: opts.name,
      isPrimary: opts.primary,
      primaryHostname: opts.primary ? null : opts.primaryName,
    });
    const appPort = freePort();
    const litefsYml = `${opts.dir}/litefs.yml`;
    await Deno.writeTextFile(
      litefsYml,
      `fuse:\n  dir: "${mountDir}"\nhttp:\n  addr: "${new URL(sim.url).host}"\n`,
    );
    const env: Record<string, string> = {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: Deno.env.get("HOME") ?? opts.dir,
      NO_COLOR: "1",
      HOSTNAME: opts.name,
      NDLS_LITEFS_CONFIG: litefsYml,
      NDLS_HEALTH_URL: `http://127.0.0.1:${appPort}/ping`,
      NDLS_HEALTH_INTERVAL: "100ms",
      NDLS_STOP_TIMEOUT: `${DEMO_STOP_TIMEOUT_MS}ms`,
      NDLS_SERVICE_ADDRESS: "127.0.0.1",
      NDLS_SERVICE_PORT: String(appPort),
      NDLS_CHECK_INTERVAL: "1s",
      NDLS_STATUS_ADDR: "127.0.0.1:0",
      NDLS_LOG_FORMAT: "json",
      CONSUL_HTTP_ADDR: opts.consulUrl,
      ...opts.app.env(appPort, opts.dir),
    };
    const denoDir = Deno.env.get("DENO_DIR");
    if (denoDir) env.DENO_DIR = denoDir;
    const [cmd, ...args] = supervisorCommand();
    let proc: Deno.ChildProcess;
    try {
      proc = new Deno.Command(cmd, {
        args: [...args, "--", ...opts.app.command],
        env,
        clearEnv: true,
        // Its own process group: a terminal's Ctrl-C goes to the demo only,
        // which then stops each supervisor exactly once.
        detached: true,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (e) {
      await sim.stop();
      throw e;
    }
    return new DemoNode(opts, { mountDir, appPort, sim, proc });
  }

  /**
   * The app process the supervisor has (running or stopping), per its newest
   * `/status`; null when it has none or has exited itself.
   */
  get appPid(): number | null {
    if (this.exit) return null;
    return this.status?.child.pid ?? null;
  }

  /** TCP ports this node used: LiteFS API, app, status listener. */
  ports(): number[] {
    const out = [Number(new URL(this.sim.url).port), this.appPort];
    if (this.statusPort !== null) out.push(this.statusPort);
    return out;
  }

  /**
   * SIGTERM to the supervisor (it deregisters, stops the app, exits 0); if it
   * has not exited within `timeoutMs`, or `hurry` aborts first, SIGKILL it
   * and the app's process group. Resolves with how it ended: `clean` (exit 0
   * after SIGTERM), `killed`, or `failed` (it exited with another code).
   */
  async stop(timeoutMs: number, hurry: AbortSignal): Promise<"clean" | "killed" | "failed"> {
    // Exactly one SIGTERM: the supervisor takes a second one as "kill now".
    if (!this.exit && !hurry.aborted) {
      try {
        this.proc.kill("SIGTERM");
      } catch {
        // Exited meanwhile.
      }
    }
    const gaveUp = new AbortController();
    const exited = await Promise.race([
      this.proc.status.then(() => true),
      abortableDelay(timeoutMs, AbortSignal.any([hurry, gaveUp.signal])).then(() => false),
    ]);
    gaveUp.abort();
    if (!exited) {
      try {
        this.proc.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }
    const status = await this.proc.status;
    // The app runs in its own process group, so a supervisor that did not
    // stop it leaves it running: end it here.
    this.killLeftoverApps();
    if (!exited) return "killed";
    return status.code === 0 ? "clean" : "failed";
  }

  /** SIGKILLs the process group of every app this node started that still runs. */
  killLeftoverApps(): void {
    for (const pid of this.appPids) {
      if (!processAlive(pid)) continue;
      try {
        Deno.kill(-pid, "SIGKILL");
      } catch {
        // Gone meanwhile.
      }
    }
  }

  /** After {@link stop}: ends polling, drains the output, stops the simulator. */
  async dispose(): Promise<void> {
    this.#poll.abort();
    await this.#polling;
    this.#client.close();
    // The app inherits the supervisor's pipes; once both are gone the pumps end.
    await Promise.allSettled(this.#pumps);
    await this.sim.stop();
  }

  async #readLines(stream: ReadableStream<Uint8Array<ArrayBuffer>>): Promise<void> {
    let pending = "";
    try {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        pending += text;
        let nl: number;
        while ((nl = pending.indexOf("\n")) >= 0) {
          this.#line(pending.slice(0, nl));
          pending = pending.slice(nl + 1);
        }
      }
    } catch {
      // The pipe broke: the process is gone.
    }
  }

  /** Turns one supervisor JSON log line into an event; the app's own output is ignored. */
  #line(line: string): void {
    if (!line.startsWith("{")) return;
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(line);
    } catch {
      return;
    }
    if (typeof rec.logger !== "string" || !rec.logger.startsWith("supervisor")) return;
    const at = Date.parse(String(rec["@timestamp"]));
    const msg = String(rec.message ?? "");
    if (msg.startsWith("role ") && typeof rec.to === "string") {
      this.role = { name: rec.to, since: at };
      this.#onEvent(this, {
        kind: "role",
        at,
        from: String(rec.from),
        to: rec.to,
        cause: String(rec.cause),
        reason: String(rec.reason),
      });
    } else if (msg.startsWith("started Navidrome") && typeof rec.pid === "number") {
      this.appPids.add(rec.pid);
      this.#onEvent(this, { kind: "started", at, pid: rec.pid });
    } else if (msg.startsWith("stopping Navidrome") && typeof rec.pid === "number") {
      this.#onEvent(this, { kind: "stopping", at, pid: rec.pid });
    } else if (msg.startsWith("status and metrics on") && typeof rec.port === "number") {
      this.statusPort = rec.port;
      this.#onEvent(this, { kind: "listening", at, port: rec.port });
    } else if (rec.level === "WARNING" || rec.level === "ERROR" || rec.level === "FATAL") {
      this.#onEvent(this, { kind: "problem", at, message: msg });
    }
  }

  async #pollStatus(): Promise<void> {
    const signal = this.#poll.signal;
    while (!signal.aborted && !this.exit) {
      if (this.statusPort !== null) {
        const sentAt = Date.now();
        try {
          const res = await fetch(`http://127.0.0.1:${this.statusPort}/status`, {
            client: this.#client,
            signal: AbortSignal.any([signal, AbortSignal.timeout(1000)]),
          });
          const body = await res.json() as NodeStatus;
          if (body.child.pid !== null) this.appPids.add(body.child.pid);
          this.status = body;
          this.statusSentAt = sentAt;
        } catch {
          // Not up yet, or going away: the next round tries again.
        }
      }
      await abortableDelay(STATUS_POLL_MS, signal);
    }
  }
}
