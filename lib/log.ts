/**
 * Logging via LogTape: human text by default, one JSON object per line when
 * configured. Lines go to stderr synchronously, so nothing is lost when the
 * supervisor exits right after logging, and every line passes through the
 * redactor so a secret can never reach the output.
 * @module
 */

import {
  configureSync,
  getJsonLinesFormatter,
  getLogger,
  getTextFormatter,
  type Logger,
  type LogRecord,
  resetSync,
} from "@logtape/logtape";
import { redact, type Secret } from "./secret.ts";

/** Root category of every supervisor logger. */
export const LOG_ROOT = "supervisor";

/** Options of {@link setupLogging}. */
export interface LogOptions {
  format: "text" | "json";
  level: "debug" | "info" | "warning" | "error";
  /** Values scrubbed from every line (the Consul token). */
  secrets: readonly (Secret | null)[];
  /** Where lines go; stderr by default. */
  write?: (line: string) => void;
}

/** Configures LogTape for the process; safe to call again (tests). */
export function setupLogging(opts: LogOptions): void {
  const format = opts.format === "json"
    ? bareJson(getJsonLinesFormatter({ properties: "flatten" }))
    : getTextFormatter({ timestamp: "date-time-timezone", value: "bare" });
  const enc = new TextEncoder();
  const write = opts.write ?? ((line: string) => writeAll(enc.encode(line)));
  resetSync();
  configureSync({
    sinks: {
      stderr: (record: LogRecord) => write(redact(format(record), opts.secrets)),
    },
    loggers: [
      { category: [LOG_ROOT], lowestLevel: opts.level, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

/** A logger below the supervisor's root category, e.g. `logger("consul")`. */
export function logger(...category: string[]): Logger {
  return getLogger([LOG_ROOT, ...category]);
}

/**
 * LogTape's JSON formatter renders `message` with every value JSON-quoted
 * (`role \"primary\"`); its text formatter can render them bare. Rendering
 * the message first gives JSON lines the same `message` text as text lines;
 * the values themselves stay in their own fields.
 */
function bareJson(json: (r: LogRecord) => string): (r: LogRecord) => string {
  return (record) => {
    const text = record.message.map((part, i) =>
      i % 2 === 0 || typeof part === "string" ? String(part) : Deno.inspect(part)
    ).join("");
    return json({ ...record, message: [text] });
  };
}

function writeAll(bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) off += Deno.stderr.writeSync(bytes.subarray(off));
}
