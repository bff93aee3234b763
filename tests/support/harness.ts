/**
 * Runs one real supervisor process against a LiteFS simulator, a temporary
 * directory acting as the mount, the stand-in app and (optionally) the Consul
 * double — the integration-test equivalent of one cluster node.
 * @module
 */

import { LiteFsSim } from "./litefs_sim.ts";
import { STAND_IN_APP, supervisorCommand } from "./permissions.ts";
import { freePort, processAlive, waitFor } from "./wait.ts";

/** One line of the stand-in app's state file. */
export interface AppEvent {
  event: string;
  pid: number;
  at: number;
  code?: number;
}

/** Options of {@link TestNode.start}. */
export interface TestNodeOptions {
  hostname?: string;
  /** Start the simulator as primary. */
  primary?: boolean;
  /** Extra supervisor environment (NDLS_*, CONSUL_*). */
  env?: Record<string, string>;
  /** Extra stand-in app environment (APP_MODE, …). */
  appEnv?: Record<string, string>;
  /** Consul agent URL; omitted = Consul disabled. */
  consulUrl?: string;
  /** Start no simulator (API off); the mount dir is still created. */
  noApi?: boolean;
  /** Replace the child command entirely. */
  command?: string[];
}

/** A supervisor process under test, with its simulator and app. */
export class TestNode {
  readonly hostname: string;
  readonly dir: string;
  readonly mountDir: string;
  readonly stateFile: string;
  readonly appPort: number;
  readonly sim: LiteFsSim | null;
  readonly proc: Deno.ChildProcess;
  #output = "";
  #pumps: Promise<void>[] = [];
  /** When the simulator last changed this node's role, and to what. */
  roleChange: { at: number; primary: boolean } = { at: 0, primary: false };
  #status: Deno.CommandStatus | null = null;

  private constructor(
    init: {
      hostname: string;
      dir: string;
      appPort: number;
      sim: LiteFsSim | null;
      proc: Deno.ChildProcess;
    },
  ) {
    this.hostname = init.hostname;
    this.dir = init.dir;
    this.mountDir = `${init.dir}/mount`;
    this.stateFile = `${init.dir}/app.jsonl`;
    this.appPort = init.appPort;
    this.sim = init.sim;
    this.proc = init.proc;
    for (const stream of [init.proc.stdout, init.proc.stderr]) {
      this.#pumps.push(
        stream.pipeThrough(new TextDecoderStream()).pipeTo(
          new WritableStream({ write: (chunk) => void (this.#output += chunk) }),
        ),
      );
    }
    init.proc.status.then((s) => (this.#status = s));
  }

  /** Makes this node primary in the simulator (`.primary` removed, event sent). */
  promote(): void {
    this.roleChange = { at: Date.now(), primary: true };
    this.sim!.setPrimary();
  }

  /** Makes this node a replica of `primary` in the simulator. */
  demote(primary: string | null = "node-z"): void {
    this.roleChange = { at: Date.now(), primary: false };
    this.sim!.setReplica(primary);
  }

  /** Starts the simulator and the supervisor. */
  static async start(opts: TestNodeOptions = {}): Promise<TestNode> {
    const hostname = opts.hostname ?? "node-a";
    const dir = await Deno.makeTempDir({ prefix: "ndls-test-" });
    const mountDir = `${dir}/mount`;
    await Deno.mkdir(mountDir);
    const sim = opts.noApi
      ? null
      : await LiteFsSim.start({ mountDir, hostname, isPrimary: opts.primary ?? false });
    const appPort = freePort();
    const litefsYml = `${dir}/litefs.yml`;
    await Deno.writeTextFile(
      litefsYml,
      `fuse:\n  dir: "${mountDir}"\nhttp:\n  addr: "${
        sim ? new URL(sim.url).host : "127.0.0.1:1"
      }"\n`,
    );
    const env: Record<string, string> = {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: Deno.env.get("HOME") ?? "/root",
      NO_COLOR: "1",
      HOSTNAME: hostname,
      NDLS_LITEFS_CONFIG: litefsYml,
      NDLS_HEALTH_URL: `http://127.0.0.1:${appPort}/ping`,
      NDLS_HEALTH_INTERVAL: "50ms",
      NDLS_CONSUL: opts.consulUrl ? "true" : "false",
      NDLS_SERVICE_PORT: String(appPort),
      APP_PORT: String(appPort),
      APP_STATE_FILE: `${dir}/app.jsonl`,
      ...(opts.noApi ? { NDLS_LITEFS_API: "off", NDLS_LEADERSHIP: "file" } : {}),
      ...(opts.consulUrl ? { CONSUL_HTTP_ADDR: opts.consulUrl } : {}),
      ...opts.appEnv,
      ...opts.env,
    };
    const denoDir = Deno.env.get("DENO_DIR");
    if (denoDir) env.DENO_DIR = denoDir;
    const [cmd, ...args] = supervisorCommand();
    const child = opts.command ?? [Deno.execPath(), "run", "-A", "--quiet", STAND_IN_APP];
    const proc = new Deno.Command(cmd, {
      args: [...args, "--", ...child],
      env,
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const node = new TestNode({ hostname, dir, appPort, sim, proc });
    node.roleChange = { at: Date.now(), primary: opts.primary ?? false };
    return node;
  }

  /** The current output length, to wait for text printed after this point. */
  mark(): number {
    return this.#output.length;
  }

  /** Everything the supervisor (and the app) printed so far. */
  get output(): string {
    return this.#output;
  }

  /** The supervisor's exit status, once it has exited. */
  get status(): Deno.CommandStatus | null {
    return this.#status;
  }

  /** The app's state-file events, oldest first. */
  appEvents(): AppEvent[] {
    let text = "";
    try {
      text = Deno.readTextFileSync(this.stateFile);
    } catch {
      return [];
    }
    return text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
  }

  /** Pids of app processes that started and are still alive. */
  liveApps(): number[] {
    const pids = new Set(this.appEvents().filter((e) => e.event === "start").map((e) => e.pid));
    return [...pids].filter((p) => processAlive(p));
  }

  /** How many times the app has started. */
  appStarts(): number {
    return this.appEvents().filter((e) => e.event === "start").length;
  }

  /** Waits until exactly one app process runs; returns its pid. */
  waitAppRunning(timeoutMs = 10_000): Promise<number> {
    return waitFor(() => {
      const live = this.liveApps();
      return live.length === 1 ? live[0] : false;
    }, { timeoutMs, what: `${this.hostname}: app running (output: ${this.tail()})` });
  }

  /** Waits until no app process runs. */
  async waitAppGone(timeoutMs = 10_000): Promise<void> {
    await waitFor(() => this.liveApps().length === 0, {
      timeoutMs,
      what: `${this.hostname}: app gone (output: ${this.tail()})`,
    });
  }

  /** Waits until the output (from offset `from`, see {@link mark}) contains `text`. */
  async waitOutput(text: string | RegExp, timeoutMs = 10_000, from = 0): Promise<void> {
    await waitFor(
      () => {
        const out = this.#output.slice(from);
        return typeof text === "string" ? out.includes(text) : text.test(out);
      },
      { timeoutMs, what: `${this.hostname}: output ${text} (output: ${this.tail()})` },
    );
  }

  /** Waits for the supervisor to exit and returns its code. */
  async exitCode(timeoutMs = 20_000): Promise<number> {
    const s = await waitFor(() => this.#status, {
      timeoutMs,
      what: `${this.hostname}: supervisor exit (output: ${this.tail()})`,
    });
    return s.code;
  }

  /** Sends a signal to the supervisor. */
  signal(sig: Deno.Signal): void {
    this.proc.kill(sig);
  }

  /** The last lines of output, for failure messages. */
  tail(lines = 15): string {
    return "\n" + this.#output.trimEnd().split("\n").slice(-lines).join("\n");
  }

  /** Kills whatever is left (supervisor, apps), stops the simulator, removes the temp dir. */
  async cleanup(): Promise<void> {
    if (!this.#status) {
      try {
        this.proc.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
    await this.proc.status;
    // Apps inherit the supervisor's stdout/stderr, so the pipes close only once they are gone.
    for (const pid of this.liveApps()) {
      try {
        Deno.kill(-pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    await Promise.allSettled(this.#pumps);
    await this.sim?.stop();
    await Deno.remove(this.dir, { recursive: true });
  }
}

/** Starts a node, runs `body`, and always cleans up. */
export async function withNode(
  opts: TestNodeOptions,
  body: (n: TestNode) => Promise<void>,
): Promise<void> {
  const node = await TestNode.start(opts);
  try {
    await body(node);
  } finally {
    await node.cleanup();
  }
}

/**
 * Longest an app may stay alive after its node stopped being primary: the
 * supervisor's reaction plus the stand-in's prompt exit, with room for a
 * loaded 2-core CI machine.
 */
export const REACTION_BOUND_MS = 2000;

/**
 * Samples nodes every 20 ms and records every breach of the invariants that
 * hold at all times: at most one app per node, and no app alive on a node
 * that stopped being primary more than {@link REACTION_BOUND_MS} ago.
 */
export class InvariantMonitor {
  readonly violations: string[] = [];
  samples = 0;
  #timer: ReturnType<typeof setInterval>;

  /** Starts sampling `nodes`. */
  constructor(nodes: readonly TestNode[]) {
    this.#timer = setInterval(() => {
      this.samples++;
      const now = Date.now();
      for (const n of nodes) {
        const live = n.liveApps();
        if (live.length > 1) this.violations.push(`${n.hostname}: ${live.length} apps alive`);
        const rc = n.roleChange;
        if (live.length > 0 && !rc.primary && now - rc.at > REACTION_BOUND_MS) {
          this.violations.push(`${n.hostname}: app alive ${now - rc.at}ms after demotion`);
        }
      }
    }, 20);
  }

  /** Stops sampling and returns the violations. */
  stop(): string[] {
    clearInterval(this.#timer);
    return this.violations;
  }
}
