/**
 * A stand-in for Navidrome, run as its own process by tests:
 *
 * ```sh
 * APP_PORT=4533 APP_STATE_FILE=/tmp/app.jsonl deno run -A tests/support/stand_in_app.ts
 * ```
 *
 * Configuration (environment):
 * - `APP_PORT` (required unless crashing at start): serve `GET /ping` -> 200 `.` on
 *   127.0.0.1, like Navidrome.
 * - `APP_MODE`: `normal` (default) | `ignore-term` | `crash-at-start` | `exit-after` |
 *   `slow-stop`; see `AppMode` below.
 * - `APP_EXIT_AFTER_MS`: delay for `exit-after` (default 100).
 * - `APP_STOP_MS`: shutdown duration for `slow-stop` (default 1000).
 * - `APP_GRANDCHILD=1`: spawn a grandchild that ignores SIGTERM, like Navidrome's
 *   scanner, in this process's group; its pid goes to `APP_GRANDCHILD_PIDFILE`.
 * - `APP_STATE_FILE`: append one JSON line per lifecycle event
 *   (`start`, `term`, `int`, `hup`, `usr1`, `exit`), each `{"event","pid","at",…}`;
 *   `start` (with `mode`) comes once signals are handled and `/ping` is bound,
 *   `exit` carries `code`.
 *
 * Exit codes: 0 after a handled SIGTERM/SIGINT, 3 for `crash-at-start`, 4 for
 * `exit-after`, 2 for a bad configuration.
 *
 * @module
 */

/**
 * How the stand-in behaves:
 * - `normal`: SIGTERM or SIGINT closes the server and exits 0 at once.
 * - `ignore-term`: SIGTERM and SIGINT are recorded and otherwise ignored.
 * - `crash-at-start`: exits 3 right after recording `start`.
 * - `exit-after`: exits 4 after `APP_EXIT_AFTER_MS`.
 * - `slow-stop`: on SIGTERM or SIGINT closes the server at once, exits 0 after `APP_STOP_MS`.
 */
type AppMode = "normal" | "ignore-term" | "crash-at-start" | "exit-after" | "slow-stop";

const MODES: readonly AppMode[] = [
  "normal",
  "ignore-term",
  "crash-at-start",
  "exit-after",
  "slow-stop",
];

/** Exit code for a configuration the stand-in cannot run with. */
const EXIT_BAD_CONFIG = 2;
const EXIT_CRASH_AT_START = 3;
const EXIT_AFTER = 4;

function fail(message: string): never {
  console.error(`stand_in_app: ${message}`);
  Deno.exit(EXIT_BAD_CONFIG);
}

function envMs(name: string, fallback: number): number {
  const raw = Deno.env.get(name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) fail(`${name} must be a whole number, got ${raw}`);
  return value;
}

const stateFile = Deno.env.get("APP_STATE_FILE");

/**
 * Appends one event line. Sync and unbuffered: a single O_APPEND write is what
 * a polling reader sees as one whole line, and it must land before
 * `Deno.exit` ends the process.
 */
function record(event: string, extra: Record<string, unknown> = {}): void {
  if (!stateFile) return;
  const line = JSON.stringify({ event, pid: Deno.pid, at: Date.now(), ...extra }) + "\n";
  Deno.writeTextFileSync(stateFile, line, { append: true });
}

function exit(code: number): never {
  record("exit", { code });
  Deno.exit(code);
}

/**
 * Starts a grandchild in this process's group that ignores SIGTERM (the
 * ignored disposition survives `exec`), so only a group-wide SIGKILL ends it.
 * Its stdio is /dev/null so it never holds a test's pipes open.
 */
function spawnGrandchild(pidFile: string): void {
  const child = new Deno.Command("/bin/sh", {
    args: ["-c", "trap '' TERM; exec sleep 1000"],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  // Written then renamed, so a reader polling the file never sees it half-written.
  Deno.writeTextFileSync(`${pidFile}.tmp`, `${child.pid}\n`);
  Deno.renameSync(`${pidFile}.tmp`, pidFile);
}

function main(): void {
  const mode = (Deno.env.get("APP_MODE") ?? "normal") as AppMode;
  if (!MODES.includes(mode)) fail(`unknown APP_MODE ${mode}`);
  const exitAfterMs = envMs("APP_EXIT_AFTER_MS", 100);
  const stopMs = envMs("APP_STOP_MS", 1000);

  if (mode === "crash-at-start") {
    record("start", { mode });
    exit(EXIT_CRASH_AT_START);
  }
  const port = Number(Deno.env.get("APP_PORT"));
  if (!Number.isInteger(port) || port <= 0 || port > 65535) fail("APP_PORT must be a TCP port");

  if (Deno.env.get("APP_GRANDCHILD") === "1") {
    const pidFile = Deno.env.get("APP_GRANDCHILD_PIDFILE");
    if (!pidFile) fail("APP_GRANDCHILD=1 needs APP_GRANDCHILD_PIDFILE");
    spawnGrandchild(pidFile);
  }

  const server = Deno.serve(
    { hostname: "127.0.0.1", port, onListen: () => {} },
    (req) => {
      const path = new URL(req.url).pathname;
      return req.method === "GET" && path === "/ping"
        ? new Response(".", { headers: { "content-type": "text/plain; charset=utf-8" } })
        : new Response("not found\n", { status: 404 });
    },
  );

  let stopping = false;
  const onStopSignal = (event: string) => {
    record(event);
    // Navidrome ignores a second shutdown signal; so does the stand-in.
    if (mode === "ignore-term" || stopping) return;
    stopping = true;
    // Not awaited: shutdown waits for open connections, and a client holding
    // one open must not keep the stand-in alive past the exit below.
    server.shutdown();
    setTimeout(() => exit(0), mode === "slow-stop" ? stopMs : 0);
  };
  Deno.addSignalListener("SIGTERM", () => onStopSignal("term"));
  Deno.addSignalListener("SIGINT", () => onStopSignal("int"));
  // Navidrome would shut down on SIGHUP; the stand-in only records it so a test
  // can prove the supervisor never sends it.
  Deno.addSignalListener("SIGHUP", () => record("hup"));
  Deno.addSignalListener("SIGUSR1", () => record("usr1"));

  // Written last, so a test that saw "start" may signal at once: every handler is in place.
  record("start", { mode });
  if (mode === "exit-after") setTimeout(() => exit(EXIT_AFTER), exitAfterMs);
}

if (import.meta.main) main();
