/**
 * One benchmark node: a temporary directory acting as the LiteFS mount, the
 * LiteFS simulator, a Consul agent double, and a supervisor under test (ours
 * or the shell baseline) supervising the stand-in app behind a spawn stamp.
 * Every timestamp the bench compares is `Date.now()` on this host: the
 * harness's own, the double's recorded arrivals, the app's state file and the
 * supervisors' log stamps.
 * @module
 */

import { ConsulDouble, type RecordedCall } from "../tests/support/consul_double.ts";
import { LiteFsSim } from "../tests/support/litefs_sim.ts";
import { STAND_IN_APP, supervisorCommand } from "../tests/support/permissions.ts";
import { freePort, waitFor } from "../tests/support/wait.ts";
import { onCleanup } from "./cleanup.ts";
import { procExists } from "./proc.ts";
import { HEALTH_INTERVAL_MS, POLL_INTERVAL_MS } from "./settings.ts";

/** The spawn-stamp wrapper put in front of the stand-in app. */
export const APP_SH = new URL("./app.sh", import.meta.url).pathname;
/** The reference shell loop. */
export const BASELINE_SH = new URL("./baseline.sh", import.meta.url).pathname;

/** Which supervisor runs, and how it learns the role. */
export type Subject =
  /** Ours, default leadership: LiteFS `/events` + `/info` + `.primary` poll. */
  | "ours-events"
  /** Ours with the API off and `NDLS_LEADERSHIP=file`: the `.primary` poll alone. */
  | "ours-poll"
  /** bench/baseline.sh: `[ -e .primary ]` once a second. */
  | "baseline";

/** One line of the stand-in app's state file (or the spawn stamp's). */
export interface AppEvent {
  event: string;
  pid: number;
  at: number;
  code?: number;
}

/** One line a supervisor printed. */
export interface OutputLine {
  /** The harness's `Date.now()` when the line was read from the pipe. */
  arrivedAt: number;
  /** The time the line itself carries (when the supervisor wrote it), or null. */
  stampedAt: number | null;
  text: string;
}

/** Options of {@link BenchNode.create}. */
export interface BenchNodeOptions {
  subject: Subject;
  /** Initial role in the simulator. */
  primary: boolean;
  /** Extra supervisor environment. */
  env?: Record<string, string>;
}

/** A node's world plus (while launched) one supervisor process. */
export class BenchNode {
  readonly subject: Subject;
  readonly dir: string;
  readonly mountDir: string;
  readonly stateFile: string;
  readonly appPort: number;
  readonly sim: LiteFsSim;
  readonly consul: ConsulDouble;
  readonly #env: Record<string, string>;
  #proc: Deno.ChildProcess | null = null;
  #exitedAt: number | null = null;
  #exit: Deno.CommandStatus | null = null;
  #pumps: Promise<void>[] = [];
  #lines: OutputLine[] = [];
  #events: AppEvent[] = [];
  #stateOffset = 0;
  #appPids = new Set<number>();
  #primary: boolean;
  #cleaned = false;
  /** Unregisters this node from the bench-wide cleanup (cleanup.ts). */
  #forget: () => void = () => {};

  private constructor(
    init: {
      subject: Subject;
      dir: string;
      appPort: number;
      sim: LiteFsSim;
      consul: ConsulDouble;
      env: Record<string, string>;
      primary: boolean;
    },
  ) {
    this.subject = init.subject;
    this.dir = init.dir;
    this.mountDir = `${init.dir}/mount`;
    this.stateFile = `${init.dir}/app.jsonl`;
    this.appPort = init.appPort;
    this.sim = init.sim;
    this.consul = init.consul;
    this.#env = init.env;
    this.#primary = init.primary;
  }

  /** Sets up the mount dir, simulator and Consul double; launches nothing yet. */
  static async create(opts: BenchNodeOptions): Promise<BenchNode> {
    const hostname = "node-a";
    const dir = await Deno.makeTempDir({ prefix: "ndls-bench-" });
    const mountDir = `${dir}/mount`;
    const stateFile = `${dir}/app.jsonl`;
    let sim: LiteFsSim | null = null;
    let consul: ConsulDouble | null = null;
    try {
      sim = await LiteFsSim.start({
        mountDir,
        hostname,
        isPrimary: opts.primary,
        primaryHostname: opts.primary ? null : "node-b",
      });
      consul = await ConsulDouble.start();
      const appPort = freePort();
      const common: Record<string, string> = {
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
        HOME: Deno.env.get("HOME") ?? "/root",
        LC_ALL: "C",
        NO_COLOR: "1",
        HOSTNAME: hostname,
        CONSUL_HTTP_ADDR: consul.url,
        APP_PORT: String(appPort),
        APP_STATE_FILE: stateFile,
      };
      const denoDir = Deno.env.get("DENO_DIR");
      if (denoDir) common.DENO_DIR = denoDir;
      let env: Record<string, string>;
      if (opts.subject === "baseline") {
        env = {
          ...common,
          BASELINE_MOUNT_DIR: mountDir,
          BASELINE_SERVICE_ID: `navidrome-${hostname}`,
          BASELINE_SERVICE_PORT: String(appPort),
        };
      } else {
        const litefsYml = `${dir}/litefs.yml`;
        await Deno.writeTextFile(
          litefsYml,
          `fuse:\n  dir: "${mountDir}"\nhttp:\n  addr: "${new URL(sim.url).host}"\n`,
        );
        env = {
          ...common,
          NDLS_LITEFS_CONFIG: litefsYml,
          NDLS_HEALTH_URL: `http://127.0.0.1:${appPort}/ping`,
          NDLS_SERVICE_PORT: String(appPort),
          NDLS_LOG_FORMAT: "json",
          NDLS_POLL_INTERVAL: `${POLL_INTERVAL_MS}ms`,
          NDLS_HEALTH_INTERVAL: `${HEALTH_INTERVAL_MS}ms`,
          // inotify sees nothing on a real LiteFS FUSE mount; on this plain
          // directory it would, and would flatter the poll-only figures.
          NDLS_WATCH: "false",
          ...(opts.subject === "ours-poll"
            ? { NDLS_LITEFS_API: "off", NDLS_LEADERSHIP: "file" }
            : {}),
        };
      }
      const node = new BenchNode({
        subject: opts.subject,
        dir,
        appPort,
        sim,
        consul,
        env: { ...env, ...opts.env },
        primary: opts.primary,
      });
      node.#forget = onCleanup(() => node.cleanup());
      return node;
    } catch (e) {
      await sim?.stop();
      await consul?.stop();
      await Deno.remove(dir, { recursive: true });
      throw e;
    }
  }

  /** The simulator's current role for this node. */
  get primary(): boolean {
    return this.#primary;
  }

  /** The supervisor's pid while launched. */
  get pid(): number {
    if (!this.#proc) throw new Error("supervisor not launched");
    return this.#proc.pid;
  }

  /** The supervisor's exit status and when the harness saw it, once it has exited. */
  get exit(): { status: Deno.CommandStatus; at: number } | null {
    return this.#exit && this.#exitedAt !== null
      ? { status: this.#exit, at: this.#exitedAt }
      : null;
  }

  /**
   * Starts the supervisor. Returns `Date.now()` taken right before the spawn,
   * the "exec" instant of the start-up figures.
   */
  launch(): number {
    if (this.#proc && !this.#exit) throw new Error("supervisor already running");
    const app = ["/bin/bash", APP_SH, Deno.execPath(), "run", "-A", "--quiet", STAND_IN_APP];
    const [cmd, ...args] = this.subject === "baseline"
      ? ["/bin/bash", BASELINE_SH, "--", ...app]
      : [...supervisorCommand(), "--", ...app];
    this.#exit = null;
    this.#exitedAt = null;
    const command = new Deno.Command(cmd, {
      args,
      env: this.#env,
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      // Its own process group, so cleanup can kill the shell baseline together
      // with its `sleep`, `curl` and app children.
      detached: true,
    });
    const t0 = Date.now();
    const proc = command.spawn();
    this.#proc = proc;
    for (const stream of [proc.stdout, proc.stderr]) this.#pumps.push(this.#pump(stream));
    proc.status.then((s) => {
      this.#exitedAt = Date.now();
      this.#exit = s;
    });
    return t0;
  }

  async #pump(stream: ReadableStream<Uint8Array<ArrayBuffer>>): Promise<void> {
    let pending = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      const arrivedAt = Date.now();
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf("\n")) >= 0) {
        const text = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        this.#lines.push({ arrivedAt, stampedAt: lineStamp(text), text });
      }
    }
  }

  /** Every output line so far (supervisor and app share the pipes). */
  get lines(): readonly OutputLine[] {
    return this.#lines;
  }

  /** The last output lines, for error messages. */
  tail(n = 12): string {
    return this.#lines.slice(-n).map((l) => l.text).join("\n");
  }

  /** App events so far (state file read incrementally), oldest first. */
  appEvents(): readonly AppEvent[] {
    let bytes: Uint8Array;
    try {
      bytes = Deno.readFileSync(this.stateFile);
    } catch {
      return this.#events;
    }
    if (bytes.length > this.#stateOffset) {
      const text = new TextDecoder().decode(bytes.subarray(this.#stateOffset));
      const end = text.lastIndexOf("\n");
      if (end >= 0) {
        const whole = text.slice(0, end + 1);
        this.#stateOffset += new TextEncoder().encode(whole).length;
        for (const line of whole.split("\n")) {
          if (!line.trim()) continue;
          const e = JSON.parse(line) as AppEvent;
          this.#appPids.add(e.pid);
          this.#events.push(e);
        }
      }
    }
    return this.#events;
  }

  /** Consul calls so far, in arrival order. */
  get calls(): readonly RecordedCall[] {
    return this.consul.calls;
  }

  /**
   * Changes this node's role in the simulator (the `.primary` file and, for
   * the API, a `primaryChange` event). Returns `Date.now()` taken right before
   * the change: the zero of every reaction figure.
   */
  setRole(primary: boolean): number {
    this.#primary = primary;
    const t0 = Date.now();
    if (primary) this.sim.setPrimary();
    else this.sim.setReplica("node-b");
    return t0;
  }

  /** Waits until `probe` holds, with a deadline; the error names `what` and the output tail. */
  async until<T>(probe: () => T | undefined | null | false, what: string, timeoutMs = 15_000) {
    try {
      return await waitFor(probe, { timeoutMs, intervalMs: 5, what });
    } catch (e) {
      throw new Error(`${this.subject}: ${(e as Error).message}\n${this.tail()}`);
    }
  }

  /** True once the app process `pid` has exited and been reaped by its supervisor. */
  appGone(pid: number): boolean {
    return !procExists(pid);
  }

  /**
   * Sends SIGTERM to the supervisor. Returns `Date.now()` taken right before
   * the signal.
   */
  terminate(): number {
    const t0 = Date.now();
    this.#proc?.kill("SIGTERM");
    return t0;
  }

  /** Waits for the supervisor to exit (after {@link terminate}). */
  async waitExit(timeoutMs = 20_000): Promise<{ status: Deno.CommandStatus; at: number }> {
    return await this.until(() => this.exit, "supervisor exit", timeoutMs);
  }

  /** Kills the supervisor (if running) and every app it started; keeps the world for a relaunch. */
  async kill(): Promise<void> {
    const proc = this.#proc;
    if (!proc) return;
    try {
      // The whole group: after a shell loop dies its `sleep` or app may linger there.
      Deno.kill(-proc.pid, "SIGKILL");
    } catch {
      // already gone
    }
    await proc.status;
    this.appEvents();
    for (const pid of this.#appPids) {
      try {
        // Ours runs the app in its own group (setsid): kill that group too.
        Deno.kill(-pid, "SIGKILL");
      } catch {
        // gone, or not a group leader (the baseline's app is in the shell's group)
      }
    }
    await Promise.allSettled(this.#pumps);
    this.#pumps = [];
    this.#proc = null;
  }

  /** Kills everything, stops the simulator and the double, removes the temp dir. */
  async cleanup(): Promise<void> {
    if (this.#cleaned) return;
    this.#cleaned = true;
    this.#forget();
    await this.kill();
    await this.sim.stop();
    await this.consul.stop();
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/**
 * The time a supervisor wrote into a line: ours logs JSON with LogTape's
 * `@timestamp` (milliseconds), the baseline starts each line with
 * `$EPOCHREALTIME` (seconds with a microsecond fraction).
 */
export function lineStamp(text: string): number | null {
  if (text.startsWith("{")) {
    try {
      const ts = (JSON.parse(text) as Record<string, unknown>)["@timestamp"];
      if (typeof ts === "string") {
        const ms = Date.parse(ts);
        return Number.isNaN(ms) ? null : ms;
      }
    } catch {
      return null;
    }
    return null;
  }
  const m = /^(\d{9,})[.,](\d{1,6}) baseline: /.exec(text);
  return m ? Number(`${m[1]}.${m[2]}`) * 1000 : null;
}

/** The message of a supervisor line: ours' JSON `message`, or the baseline's text. */
export function lineMessage(text: string): string {
  if (text.startsWith("{")) {
    try {
      const msg = (JSON.parse(text) as Record<string, unknown>).message;
      return typeof msg === "string" ? msg : text;
    } catch {
      return text;
    }
  }
  return text.replace(/^\d+[.,]\d+ baseline: /, "");
}
