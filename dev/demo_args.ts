/**
 * The demo's command line.
 * @module
 */

import { parseDuration } from "../lib/duration.ts";

/** How often leadership moves unless told otherwise: long enough to read the table. */
export const DEFAULT_INTERVAL_MS = 5000;
/** Shortest interval accepted: a handover itself takes a few hundred milliseconds. */
export const MIN_INTERVAL_MS = 200;

/** What the demo was asked to do. */
export interface DemoOptions {
  /** Time between leadership moves. */
  intervalMs: number;
  /** Stop after this long; null runs until Ctrl-C. */
  durationMs: number | null;
  /** Navidrome binary given by `--navidrome`; null means look on PATH. */
  navidrome: string | null;
  /** Use the stand-in app even when `navidrome` is on PATH. */
  standIn: boolean;
  /** Print usage and exit. */
  help: boolean;
}

/** Usage text of `deno task demo`. */
export const DEMO_USAGE = `Usage: deno task demo [options]

Runs three simulated nodes locally: real supervisor processes, a LiteFS API
simulator per node, a shared Consul agent double, and a stand-in app (or a
real Navidrome) as the supervised program. Leadership moves between nodes.

Options:
  --interval <time>    time between leadership moves (default 5s); seconds or 500ms, 2s, 1m
  --duration <time>    stop after this long (default: run until Ctrl-C)
  --navidrome <path>   supervise this Navidrome binary (default: navidrome on PATH, else the stand-in)
  --stand-in           use the stand-in app even when navidrome is on PATH
  -h, --help           show this help

Keys (interactive terminal): space or n moves leadership now, q quits.`;

/** A bad command line; its message is one line. */
export class DemoUsageError extends Error {
  /** Builds the error. */
  constructor(message: string) {
    super(message);
    this.name = "DemoUsageError";
  }
}

/** Parses `--interval 2`, `--interval=500ms` and friends; throws {@link DemoUsageError}. */
export function parseDemoArgs(args: readonly string[]): DemoOptions {
  const opts: DemoOptions = {
    intervalMs: DEFAULT_INTERVAL_MS,
    durationMs: null,
    navidrome: null,
    standIn: false,
    help: false,
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const eq = arg.indexOf("=");
    const flag = arg.startsWith("--") && eq > 0 ? arg.slice(0, eq) : arg;
    const inline = flag === arg ? undefined : arg.slice(eq + 1);
    const value = (): string => {
      const v = inline ?? args[++i];
      if (v === undefined || v === "") throw new DemoUsageError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "-h":
      case "--help":
        opts.help = true;
        break;
      case "--interval":
        opts.intervalMs = time(flag, value());
        if (opts.intervalMs < MIN_INTERVAL_MS) {
          throw new DemoUsageError(`--interval must be at least ${MIN_INTERVAL_MS}ms`);
        }
        break;
      case "--duration":
        opts.durationMs = time(flag, value());
        if (opts.durationMs <= 0) throw new DemoUsageError("--duration must be more than 0");
        break;
      case "--navidrome":
        opts.navidrome = value();
        break;
      case "--stand-in":
        opts.standIn = true;
        break;
      default:
        throw new DemoUsageError(
          `unknown argument ${
            JSON.stringify(arg)
          } (try --interval, --duration, --navidrome, --help)`,
        );
    }
  }
  if (opts.navidrome !== null && opts.standIn) {
    throw new DemoUsageError("--navidrome and --stand-in exclude each other");
  }
  return opts;
}

/** A bare number is seconds (`--duration 20`); otherwise a duration such as `500ms`. */
function time(flag: string, text: string): number {
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const ms = parseDuration(text);
  if (ms === null) {
    throw new DemoUsageError(
      `${flag} ${JSON.stringify(text)}: expected seconds (20) or a duration (500ms, 2s, 1m)`,
    );
  }
  return ms;
}
