/**
 * navidrome-litefs supervisor: LiteFS's exec target. Runs Navidrome only on
 * the LiteFS primary and keeps Consul's `navidrome` service pointing at it.
 * @module
 */

import { isExecutableFile, parseArgs, resolveExecutable, USAGE, UsageError } from "./lib/cli.ts";
import { monotonicNow } from "./lib/clock.ts";
import { ConfigError, loadConfig } from "./lib/config.ts";
import { EXIT } from "./lib/decide.ts";
import { errorText } from "./lib/error_text.ts";
import { runDoctor } from "./lib/doctor.ts";
import { logger, setupLogging } from "./lib/log.ts";
import { serveStatus } from "./lib/status_server.ts";
import { Supervisor } from "./lib/supervisor.ts";
import { VERSION } from "./lib/version.ts";

/** Runs the supervisor with the process's arguments; resolves with the exit code. */
export async function main(args: readonly string[]): Promise<number> {
  let invocation;
  try {
    invocation = parseArgs(args);
  } catch (e) {
    return configFailure(e);
  }
  if (invocation.kind === "help") {
    console.log(USAGE);
    return EXIT.ok;
  }
  if (invocation.kind === "version") {
    console.log(VERSION);
    return EXIT.ok;
  }

  let config;
  let command: string[];
  try {
    config = loadConfig();
    command = invocation.command.length === 0 ? [] : [
      resolveExecutable(invocation.command[0], Deno.env.get("PATH"), isExecutableFile),
      ...invocation.command.slice(1),
    ];
  } catch (e) {
    if (invocation.kind === "doctor") return await runDoctor(null, e);
    return configFailure(e);
  }
  setupLogging({
    format: config.logFormat,
    level: config.logLevel,
    secrets: [config.consul.token],
  });
  if (invocation.kind === "doctor") return await runDoctor(config, null);

  const sup = new Supervisor(config, command, { now: monotonicNow });
  const onStop = (sig: Deno.Signal) => () => sup.requestShutdown(sig);
  const handlers: [Deno.Signal, () => void][] = [
    ["SIGTERM", onStop("SIGTERM")],
    ["SIGINT", onStop("SIGINT")],
    ["SIGUSR1", () => sup.forwardScanSignal()],
    // Navidrome treats SIGHUP as "shut down", so it is never passed on.
    ["SIGHUP", () => logger().info("SIGHUP ignored (Navidrome would shut down on it)")],
  ];
  for (const [sig, fn] of handlers) Deno.addSignalListener(sig, fn);
  // A bug in a background task must stop Navidrome cleanly, not crash past it.
  const onRejection = (e: PromiseRejectionEvent) => {
    e.preventDefault();
    sup.fail(e.reason);
  };
  globalThis.addEventListener("unhandledrejection", onRejection);

  const statusAbort = new AbortController();
  let server: Deno.HttpServer | null = null;
  try {
    if (config.statusAddr) {
      const { hostname, port } = config.statusAddr;
      try {
        server = serveStatus(
          sup,
          config.statusAddr,
          statusAbort.signal,
          (a) =>
            logger().info("status and metrics on http://{host}:{port}/status", {
              host: a.hostname,
              port: a.port,
            }),
        );
      } catch (e) {
        // Nothing has started yet: a taken or foreign address is the setting's fault.
        console.error(
          `config error: NDLS_STATUS_ADDR=${hostname}:${port}: cannot listen: ${errorText(e)}`,
        );
        return EXIT.config;
      }
    }
    return await sup.run();
  } catch (e) {
    logger().fatal("supervisor failed: {error}", {
      error: e instanceof Error ? e.message : String(e),
    });
    return EXIT.failure;
  } finally {
    statusAbort.abort();
    await server?.finished;
    for (const [sig, fn] of handlers) Deno.removeSignalListener(sig, fn);
    globalThis.removeEventListener("unhandledrejection", onRejection);
  }
}

function configFailure(e: unknown): number {
  if (e instanceof ConfigError || e instanceof UsageError) {
    for (const line of e.message.split("\n")) console.error(`config error: ${line}`);
    return EXIT.config;
  }
  throw e;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
