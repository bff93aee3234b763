/**
 * Configuration: environment variables (prefix `NDLS_` plus Consul's standard
 * client variables) and litefs.yml, turned into one validated, frozen object.
 * Every bad value becomes one line naming the variable and what it expects.
 * @module
 */

import { consulDuration, parseDuration } from "./duration.ts";
import {
  apiUrlFromHttpAddr,
  LITEFS_DEFAULT_HTTP_ADDR,
  LITEFS_DEFAULT_LEASE_TTL,
  type LiteFsSettings,
  parseLiteFsYml,
} from "./litefs_yml.ts";
import { Secret } from "./secret.ts";

/** How leadership may be decided when the LiteFS API cannot be reached. */
export type LeadershipMode = "api" | "file";

/** Consul connection and registration settings. */
export interface ConsulConfig {
  enabled: boolean;
  /** Base URL of the local agent, e.g. `http://127.0.0.1:8500`. */
  url: string;
  token: Secret | null;
  /** PEM text of `CONSUL_CACERT`, read at start-up. */
  caCert: string | null;
  timeoutMs: number;
  serviceName: string;
  serviceId: string;
  tags: readonly string[];
  /** Empty means "the agent's own address". */
  address: string;
  port: number;
  checkHttpUrl: string;
  checkIntervalMs: number;
  checkTimeoutMs: number;
  ttlMs: number;
  deregisterAfterMs: number;
  syncIntervalMs: number;
  replicaServiceName: string | null;
}

/** The whole validated configuration of one supervisor run. */
export interface Config {
  hostname: string;
  litefsConfigPath: string;
  mountDir: string;
  /** Base URL of this node's LiteFS API, or null when turned off. */
  litefsApi: string | null;
  leadership: LeadershipMode;
  pollIntervalMs: number;
  infoIntervalMs: number;
  watch: boolean;
  unknownGraceMs: number;
  stopTimeoutMs: number;
  healthUrl: string;
  healthIntervalMs: number;
  readyWarningMs: number;
  restartDelayMs: number;
  restartDelayMaxMs: number;
  stableAfterMs: number;
  maxFailures: number;
  consul: ConsulConfig;
  logFormat: "text" | "json";
  logLevel: "debug" | "info" | "warning" | "error";
  /** `host:port` of the status/metrics listener, or null when off. */
  statusAddr: { hostname: string; port: number } | null;
}

/** Raised for any invalid setting; its message has one line per problem. */
export class ConfigError extends Error {
  /** The individual problems, one line each. */
  readonly problems: readonly string[];
  /** Builds the error from its problem lines. */
  constructor(problems: string[]) {
    super(problems.join("\n"));
    this.name = "ConfigError";
    this.problems = problems;
  }
}

/** One documented setting: its name, default as shown to users, and meaning. */
export interface SettingDoc {
  name: string;
  default: string;
  meaning: string;
}

/**
 * Every setting the supervisor reads, with its default. The README's table is
 * checked against this list by a test, so the two cannot drift.
 */
export const SETTINGS: readonly SettingDoc[] = [
  {
    name: "NDLS_LITEFS_CONFIG",
    default: "/etc/litefs.yml",
    meaning:
      "litefs.yml to read the mount dir and API address from; a missing file at the default path means LiteFS defaults",
  },
  {
    name: "NDLS_MOUNT_DIR",
    default: "`fuse.dir` from litefs.yml, else `/data`",
    meaning: "LiteFS FUSE mount; `.primary` is polled here",
  },
  {
    name: "NDLS_LITEFS_API",
    default: "from `http.addr` (`:20202` → `http://127.0.0.1:20202`)",
    meaning: "this node's LiteFS HTTP API; `off` disables it (then set NDLS_LEADERSHIP=file)",
  },
  {
    name: "NDLS_LEADERSHIP",
    default: "api",
    meaning:
      "`api`: the API decides, an unreachable API means unknown; `file`: when the API is unreachable, an absent `.primary` means primary",
  },
  { name: "NDLS_POLL_INTERVAL", default: "200ms", meaning: "how often `.primary` is stat'ed" },
  {
    name: "NDLS_INFO_INTERVAL",
    default: "5s",
    meaning:
      "how often `GET /info` re-reads the role, repairing missed events (a failed one is retried after 0.5 s)",
  },
  {
    name: "NDLS_WATCH",
    default: "true",
    meaning: "use inotify on the mount dir as an early wake-up (never relied on)",
  },
  {
    name: "NDLS_UNKNOWN_GRACE",
    default: "5s",
    meaning: "how long a running Navidrome survives an unknown role",
  },
  {
    name: "NDLS_STOP_TIMEOUT",
    default: "10s",
    meaning: "SIGTERM to SIGKILL delay when stopping Navidrome's process group",
  },
  {
    name: "NDLS_HEALTH_URL",
    default: "http://127.0.0.1:4533/ping",
    meaning: "polled after start to report readiness",
  },
  {
    name: "NDLS_HEALTH_INTERVAL",
    default: "500ms",
    meaning: "readiness poll interval; the first probes come sooner (10 ms, doubling up to it)",
  },
  {
    name: "NDLS_READY_WARNING",
    default: "1m",
    meaning:
      "a warning when Navidrome has not answered the health URL this long after its start (it stays out of Consul meanwhile; a large library's migrations can take tens of seconds)",
  },
  {
    name: "NDLS_RESTART_DELAY",
    default: "1s",
    meaning: "first restart delay after Navidrome exits unexpectedly (doubles each time)",
  },
  { name: "NDLS_RESTART_DELAY_MAX", default: "30s", meaning: "cap of the restart delay" },
  {
    name: "NDLS_STABLE_AFTER",
    default: "60s",
    meaning: "a run this long resets the failure count",
  },
  {
    name: "NDLS_MAX_FAILURES",
    default: "5",
    meaning: "consecutive failures before giving up (exit 75, LiteFS releases the lease)",
  },
  {
    name: "NDLS_HOSTNAME",
    default: "`$HOSTNAME`, else the system host name",
    meaning: "this node's name (service ID, Meta)",
  },
  { name: "NDLS_CONSUL", default: "true", meaning: "register in Consul at all" },
  {
    name: "CONSUL_HTTP_ADDR",
    default: "127.0.0.1:8500",
    meaning: "local Consul agent, `host:port` or `http(s)://host:port`",
  },
  {
    name: "CONSUL_HTTP_TOKEN",
    default: "(none)",
    meaning: "ACL token, sent as X-Consul-Token, never printed",
  },
  {
    name: "CONSUL_HTTP_TOKEN_FILE",
    default: "(none)",
    meaning: "file holding the token; wins over CONSUL_HTTP_TOKEN",
  },
  {
    name: "CONSUL_HTTP_SSL",
    default: "false",
    meaning: "use https when CONSUL_HTTP_ADDR has no scheme",
  },
  {
    name: "CONSUL_CACERT",
    default: "(none)",
    meaning: "PEM file of the CA that signed the agent's certificate",
  },
  { name: "NDLS_CONSUL_TIMEOUT", default: "2s", meaning: "timeout of every Consul request" },
  {
    name: "NDLS_SERVICE_NAME",
    default: "navidrome",
    meaning: "Consul service name of the primary",
  },
  {
    name: "NDLS_SERVICE_ID",
    default: "`<service name>-<hostname>`",
    meaning: "Consul service ID, unique per node",
  },
  {
    name: "NDLS_SERVICE_TAGS",
    default: "(none)",
    meaning: "comma-separated extra tags; the role tag `primary` is always added",
  },
  {
    name: "NDLS_SERVICE_ADDRESS",
    default: "`$NOMAD_HOST_IP_navidrome`, else empty (the agent's address)",
    meaning: "address registered for Navidrome",
  },
  {
    name: "NDLS_SERVICE_PORT",
    default: "`$NOMAD_HOST_PORT_navidrome`, else 4533",
    meaning: "port registered for Navidrome",
  },
  {
    name: "NDLS_CHECK_HTTP",
    default: "`http://<address or 127.0.0.1>:<port>/ping`",
    meaning: "URL of the agent's HTTP check",
  },
  { name: "NDLS_CHECK_INTERVAL", default: "10s", meaning: "HTTP check interval" },
  { name: "NDLS_CHECK_TIMEOUT", default: "2s", meaning: "HTTP check timeout" },
  {
    name: "NDLS_CHECK_TTL",
    default: "15s",
    meaning: "TTL check, passed every third of it while LiteFS says primary",
  },
  {
    name: "NDLS_DEREGISTER_AFTER",
    default: "1m",
    meaning: "DeregisterCriticalServiceAfter of both checks (Consul's minimum is 1m)",
  },
  {
    name: "NDLS_CONSUL_SYNC_INTERVAL",
    default: "30s",
    meaning: "how often the registration is read back and repaired",
  },
  {
    name: "NDLS_REPLICA_SERVICE_NAME",
    default: "(off)",
    meaning: "when set, replicas register under this name (must differ from the service name)",
  },
  {
    name: "NDLS_LOG_FORMAT",
    default: "text",
    meaning: "`text` or `json` (one JSON object per line)",
  },
  { name: "NDLS_LOG_LEVEL", default: "info", meaning: "`debug`, `info`, `warning` or `error`" },
  {
    name: "NDLS_STATUS_ADDR",
    default: "(off)",
    meaning:
      "`host:port` of the /status and /metrics listener; a bare port binds 127.0.0.1, `:port` every interface",
  },
];

/** What {@link loadConfig} needs from the outside world, injectable for tests. */
export interface ConfigSources {
  env: (name: string) => string | undefined;
  /** Reads a text file; throws Deno.errors.NotFound when absent. */
  readTextFile: (path: string) => string;
  /** The system host name, used when neither NDLS_HOSTNAME nor HOSTNAME is set. */
  systemHostname: () => string;
}

/** The real world: process env, the file system, the kernel's host name. */
export const realSources: ConfigSources = {
  env: (n) => Deno.env.get(n),
  readTextFile: (p) => Deno.readTextFileSync(p),
  systemHostname: () => Deno.hostname(),
};

const DEFAULT_LITEFS_CONFIG = "/etc/litefs.yml";
const DEFAULT_MOUNT_DIR = "/data";
const CONSUL_MIN_DEREGISTER_AFTER_MS = 60_000;
/** An ACL token is sent in a header: visible ASCII only (Consul's are UUIDs). */
const TOKEN_CHARS = /^[\x21-\x7e]+$/;
const TOKEN_CHARS_PROBLEM =
  "the token has a space, line break or non-ASCII character inside (it goes in an HTTP header)";
/**
 * No timing of ours needs more than a day, and past 2^31 ms (24.8 days) a
 * JavaScript timer fires at once: a stop timeout of "999h" would SIGKILL
 * Navidrome immediately instead of waiting.
 */
const MAX_DURATION_MS = 24 * 3_600_000;

/** Reads, validates and freezes the configuration; throws {@link ConfigError}. */
export function loadConfig(src: ConfigSources = realSources): Config {
  const problems: string[] = [];
  const raw = (n: string): string | undefined => {
    const v = src.env(n);
    return v === undefined || v.trim() === "" ? undefined : v.trim();
  };
  const duration = (n: string, def: string, min = 0): number => {
    const text = raw(n) ?? def;
    const ms = parseDuration(text);
    if (ms === null) {
      problems.push(`${n}=${JSON.stringify(text)}: expected a duration such as 250ms, 10s or 1m`);
      return parseDuration(def)!;
    }
    if (ms < min) {
      problems.push(`${n}=${JSON.stringify(text)}: must be at least ${consulDuration(min)}`);
    } else if (ms > MAX_DURATION_MS) {
      problems.push(`${n}=${JSON.stringify(text)}: must be at most 24h`);
      return parseDuration(def)!;
    }
    return ms;
  };
  const bool = (n: string, def: boolean): boolean => {
    const text = raw(n);
    if (text === undefined) return def;
    const t = text.toLowerCase();
    if (["true", "1", "yes", "on"].includes(t)) return true;
    if (["false", "0", "no", "off"].includes(t)) return false;
    problems.push(`${n}=${JSON.stringify(text)}: expected true or false (or 1/0, yes/no, on/off)`);
    return def;
  };
  const integer = (n: string, def: number, min: number, max: number): number => {
    const text = raw(n);
    if (text === undefined) return def;
    if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) {
      problems.push(`${n}=${JSON.stringify(text)}: expected a whole number from ${min} to ${max}`);
      return def;
    }
    return Number(text);
  };
  const oneOf = <T extends string>(n: string, def: T, allowed: readonly T[]): T => {
    const text = raw(n)?.toLowerCase();
    if (text === undefined) return def;
    if (!(allowed as readonly string[]).includes(text)) {
      problems.push(`${n}=${JSON.stringify(text)}: expected one of ${allowed.join(", ")}`);
      return def;
    }
    return text as T;
  };
  const url = (n: string, value: string): string => {
    const shown = JSON.stringify(withoutCredentials(value));
    try {
      const u = new URL(value);
      if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error();
      if (u.username || u.password) {
        problems.push(`${n}=${shown}: credentials in the URL are not supported`);
      }
      return value;
    } catch {
      problems.push(`${n}=${shown}: expected an http:// or https:// URL`);
      return value;
    }
  };

  const litefsConfigPath = raw("NDLS_LITEFS_CONFIG") ?? DEFAULT_LITEFS_CONFIG;
  const ymlProblem = (text: string) =>
    problems.push(`NDLS_LITEFS_CONFIG=${JSON.stringify(litefsConfigPath)}: ${text}`);
  let yml: LiteFsSettings = { fuseDir: null, httpAddr: null, leaseTtl: null };
  const hidden = new Set<string>();
  try {
    yml = parseLiteFsYml(src.readTextFile(litefsConfigPath), hiddenAware(src.env, hidden));
  } catch (e) {
    const explicit = raw("NDLS_LITEFS_CONFIG") !== undefined;
    if (!(e instanceof Deno.errors.NotFound) || explicit) ymlProblem(errText(e));
  }
  // A variable outside the permitted list matters only in a value we use.
  const usesHidden = (key: string, value: string | null, override: string) => {
    const name = [...hidden].find((n) => value?.includes(`\${${n}}`));
    if (name === undefined) return false;
    ymlProblem(
      `${key} uses \${${name}}, which the supervisor may not read (only NDLS_*, LITEFS_*, CONSUL_HTTP_* and a few more); set ${override} instead`,
    );
    return true;
  };

  const mountOverride = raw("NDLS_MOUNT_DIR");
  const mountHidden = mountOverride === undefined &&
    usesHidden("fuse.dir", yml.fuseDir, "NDLS_MOUNT_DIR");
  const mountDir = mountOverride ?? (mountHidden ? null : yml.fuseDir) ?? DEFAULT_MOUNT_DIR;
  if (!mountDir.startsWith("/")) {
    problems.push(`NDLS_MOUNT_DIR=${JSON.stringify(mountDir)}: expected an absolute path`);
  }

  let litefsApi: string | null = null;
  let apiProblem = false;
  const apiText = raw("NDLS_LITEFS_API");
  if (apiText?.toLowerCase() === "off") {
    litefsApi = null;
  } else if (apiText !== undefined) {
    litefsApi = url("NDLS_LITEFS_API", apiText).replace(/\/+$/, "");
  } else if (usesHidden("http.addr", yml.httpAddr, "NDLS_LITEFS_API")) {
    apiProblem = true;
  } else {
    try {
      litefsApi = apiUrlFromHttpAddr(yml.httpAddr ?? LITEFS_DEFAULT_HTTP_ADDR);
    } catch (e) {
      ymlProblem(errText(e));
      apiProblem = true;
    }
  }
  const leadership = oneOf<LeadershipMode>("NDLS_LEADERSHIP", "api", ["api", "file"]);
  if (litefsApi === null && leadership === "api" && !apiProblem) {
    problems.push(
      `NDLS_LITEFS_API=off: with the API off the role can never be known; also set NDLS_LEADERSHIP=file`,
    );
  }

  const hostname = raw("NDLS_HOSTNAME") ?? raw("HOSTNAME") ?? safeHostname(src);
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(hostname)) {
    problems.push(
      `NDLS_HOSTNAME=${JSON.stringify(hostname)}: expected letters, digits, '.', '-' or '_'`,
    );
  }

  const restartDelayMs = duration("NDLS_RESTART_DELAY", "1s", 1);
  const restartDelayMaxMs = duration("NDLS_RESTART_DELAY_MAX", "30s", 1);
  if (restartDelayMaxMs < restartDelayMs) {
    problems.push(`NDLS_RESTART_DELAY_MAX: must not be shorter than NDLS_RESTART_DELAY`);
  }

  const consul = loadConsul(src, raw, { duration, bool, url, problems, hostname });

  // A Navidrome kept through an unknown spell must be gone before another
  // node can take the lease: at the latest when this node's lease expires.
  const unknownGrace = () => {
    const grace = duration("NDLS_UNKNOWN_GRACE", "5s");
    const ttlText = yml.leaseTtl ?? LITEFS_DEFAULT_LEASE_TTL;
    const ttl = parseDuration(ttlText);
    if (ttl !== null && grace >= ttl) {
      problems.push(
        `NDLS_UNKNOWN_GRACE=${
          JSON.stringify(raw("NDLS_UNKNOWN_GRACE") ?? "5s")
        }: must be shorter than LiteFS's lease TTL (lease.consul.ttl, ${ttlText}), or Navidrome could outlive this node's lease`,
      );
    }
    return grace;
  };

  const statusText = raw("NDLS_STATUS_ADDR");
  let statusAddr: Config["statusAddr"] = null;
  if (statusText !== undefined && statusText.toLowerCase() !== "off") {
    statusAddr = parseListenAddr(statusText);
    if (!statusAddr) {
      problems.push(
        `NDLS_STATUS_ADDR=${
          JSON.stringify(statusText)
        }: expected host:port, :port (every interface) or a port (binds 127.0.0.1)`,
      );
    }
  }

  const config: Config = {
    hostname,
    litefsConfigPath,
    mountDir,
    litefsApi,
    leadership,
    pollIntervalMs: duration("NDLS_POLL_INTERVAL", "200ms", 10),
    infoIntervalMs: duration("NDLS_INFO_INTERVAL", "5s", 100),
    watch: bool("NDLS_WATCH", true),
    unknownGraceMs: unknownGrace(),
    stopTimeoutMs: duration("NDLS_STOP_TIMEOUT", "10s", 1),
    healthUrl: url("NDLS_HEALTH_URL", raw("NDLS_HEALTH_URL") ?? "http://127.0.0.1:4533/ping"),
    healthIntervalMs: duration("NDLS_HEALTH_INTERVAL", "500ms", 10),
    readyWarningMs: duration("NDLS_READY_WARNING", "1m", 1),
    restartDelayMs,
    restartDelayMaxMs,
    stableAfterMs: duration("NDLS_STABLE_AFTER", "60s", 1),
    maxFailures: integer("NDLS_MAX_FAILURES", 5, 1, 1000),
    consul,
    logFormat: oneOf("NDLS_LOG_FORMAT", "text", ["text", "json"]),
    logLevel: oneOf("NDLS_LOG_LEVEL", "info", ["debug", "info", "warning", "error"]),
    statusAddr,
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return deepFreeze(config);
}

interface Helpers {
  duration: (n: string, def: string, min?: number) => number;
  bool: (n: string, def: boolean) => boolean;
  url: (n: string, value: string) => string;
  problems: string[];
  hostname: string;
}

function loadConsul(
  src: ConfigSources,
  raw: (n: string) => string | undefined,
  h: Helpers,
): ConsulConfig {
  const { duration, bool, problems } = h;
  const enabled = bool("NDLS_CONSUL", true);
  const ssl = bool("CONSUL_HTTP_SSL", false);
  const addrText = raw("CONSUL_HTTP_ADDR") ?? "127.0.0.1:8500";
  const url = consulUrl(addrText, ssl);
  if (typeof url !== "string") {
    problems.push(`CONSUL_HTTP_ADDR=${JSON.stringify(withoutCredentials(addrText))}: ${url.error}`);
  }

  let token: Secret | null = null;
  const tokenFile = raw("CONSUL_HTTP_TOKEN_FILE");
  // A value with no "/" may be the token itself, put in the wrong variable: never echo it.
  const fileShown = tokenFile?.includes("/")
    ? `CONSUL_HTTP_TOKEN_FILE=${JSON.stringify(tokenFile)}`
    : "CONSUL_HTTP_TOKEN_FILE (value hidden: not a path; is it the token itself?)";
  if (tokenFile !== undefined) {
    try {
      const t = src.readTextFile(tokenFile).trim();
      if (t === "") {
        problems.push(`${fileShown}: file is empty`);
      } else if (!TOKEN_CHARS.test(t)) {
        problems.push(
          `${fileShown}: ${TOKEN_CHARS_PROBLEM}`,
        );
      }
      token = new Secret(t);
    } catch (e) {
      problems.push(`${fileShown}: ${errText(e)}`);
    }
  } else {
    const t = src.env("CONSUL_HTTP_TOKEN")?.trim();
    if (t && !TOKEN_CHARS.test(t)) problems.push(`CONSUL_HTTP_TOKEN: ${TOKEN_CHARS_PROBLEM}`);
    if (t) token = new Secret(t);
  }

  let caCert: string | null = null;
  const caFile = raw("CONSUL_CACERT");
  if (caFile !== undefined) {
    try {
      caCert = src.readTextFile(caFile);
      if (!caCert.includes("-----BEGIN CERTIFICATE-----")) {
        problems.push(`CONSUL_CACERT=${JSON.stringify(caFile)}: not a PEM certificate`);
      } else {
        // Building the client is the only full check of the PEM's contents.
        try {
          Deno.createHttpClient({ caCerts: [caCert] }).close();
        } catch (e) {
          problems.push(`CONSUL_CACERT=${JSON.stringify(caFile)}: unusable: ${errText(e)}`);
        }
      }
    } catch (e) {
      problems.push(`CONSUL_CACERT=${JSON.stringify(caFile)}: ${errText(e)}`);
    }
  }

  const serviceName = raw("NDLS_SERVICE_NAME") ?? "navidrome";
  if (!/^[A-Za-z0-9-]+$/.test(serviceName)) {
    problems.push(
      `NDLS_SERVICE_NAME=${
        JSON.stringify(serviceName)
      }: expected letters, digits and '-' (DNS-safe)`,
    );
  }
  const serviceId = raw("NDLS_SERVICE_ID") ?? `${serviceName}-${h.hostname}`;
  if (raw("NDLS_SERVICE_ID") !== undefined && !/^[A-Za-z0-9_.:-]+$/.test(serviceId)) {
    problems.push(
      `NDLS_SERVICE_ID=${
        JSON.stringify(serviceId)
      }: expected letters, digits, '.', ':', '-' or '_'`,
    );
  }
  const tags = (raw("NDLS_SERVICE_TAGS") ?? "").split(",").map((t) => t.trim()).filter((t) => t);
  const roleTag = tags.find((t) => t === "primary" || t === "replica");
  if (roleTag) {
    problems.push(
      `NDLS_SERVICE_TAGS=${
        JSON.stringify(raw("NDLS_SERVICE_TAGS"))
      }: "${roleTag}" is the role tag the supervisor adds itself`,
    );
  }
  // Each value is reported under the variable it came from.
  const [addressVar, address] = firstSet(
    raw,
    ["NDLS_SERVICE_ADDRESS", "NOMAD_HOST_IP_navidrome"],
    "",
  );
  const addressProblem = address === "" ? null : hostProblem(address);
  if (addressProblem) problems.push(`${addressVar}=${JSON.stringify(address)}: ${addressProblem}`);
  const [portVar, portText] = firstSet(
    raw,
    ["NDLS_SERVICE_PORT", "NOMAD_HOST_PORT_navidrome"],
    "4533",
  );
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535) {
    problems.push(`${portVar}=${JSON.stringify(portText)}: expected a port from 1 to 65535`);
  }
  const checkHost = address === "" ? "127.0.0.1" : address.includes(":") ? `[${address}]` : address;
  const checkText = raw("NDLS_CHECK_HTTP");
  const checkHttpUrl = checkText !== undefined
    ? h.url("NDLS_CHECK_HTTP", checkText)
    : `http://${checkHost}:${port}/ping`;
  const replicaServiceName = raw("NDLS_REPLICA_SERVICE_NAME") ?? null;
  if (replicaServiceName !== null) {
    if (replicaServiceName === serviceName) {
      problems.push(
        `NDLS_REPLICA_SERVICE_NAME=${
          JSON.stringify(replicaServiceName)
        }: must differ from NDLS_SERVICE_NAME`,
      );
    } else if (!/^[A-Za-z0-9-]+$/.test(replicaServiceName)) {
      problems.push(
        `NDLS_REPLICA_SERVICE_NAME=${
          JSON.stringify(replicaServiceName)
        }: expected letters, digits and '-'`,
      );
    }
  }
  return {
    enabled,
    url: typeof url === "string" ? url : "http://127.0.0.1:8500",
    token,
    caCert,
    timeoutMs: duration("NDLS_CONSUL_TIMEOUT", "2s", 1),
    serviceName,
    serviceId,
    tags,
    address,
    port,
    checkHttpUrl,
    checkIntervalMs: duration("NDLS_CHECK_INTERVAL", "10s", 1000),
    checkTimeoutMs: duration("NDLS_CHECK_TIMEOUT", "2s", 1),
    ttlMs: duration("NDLS_CHECK_TTL", "15s", 1000),
    deregisterAfterMs: duration("NDLS_DEREGISTER_AFTER", "1m", CONSUL_MIN_DEREGISTER_AFTER_MS),
    syncIntervalMs: duration("NDLS_CONSUL_SYNC_INTERVAL", "30s", 100),
    replicaServiceName,
  };
}

/**
 * Normalises CONSUL_HTTP_ADDR as Consul's own clients read it: `host:port`,
 * or a URL with `http://` / `https://`. `unix://` sockets are refused
 * explicitly because `fetch` cannot dial them.
 */
export function consulUrl(addr: string, ssl: boolean): string | { error: string } {
  if (addr.startsWith("unix://")) {
    return { error: "unix sockets are not supported; use host:port or http(s)://host:port" };
  }
  const withScheme = /^[a-z]+:\/\//i.test(addr) ? addr : `${ssl ? "https" : "http"}://${addr}`;
  try {
    const u = new URL(withScheme);
    if (u.protocol !== "http:" && u.protocol !== "https:") {
      return { error: "expected host:port or an http:// or https:// URL" };
    }
    if (u.username || u.password) {
      return { error: "credentials in the address are not supported; use CONSUL_HTTP_TOKEN" };
    }
    return `${u.protocol}//${u.host}`;
  } catch {
    return { error: "expected host:port or an http:// or https:// URL" };
  }
}

/** The first of `names` that is set, and its value; the fallback under the first name. */
function firstSet(
  raw: (n: string) => string | undefined,
  names: readonly string[],
  fallback: string,
): [string, string] {
  for (const n of names) {
    const v = raw(n);
    if (v !== undefined) return [n, v];
  }
  return [names[0], fallback];
}

/**
 * Why `host` is not a host name or an IP address as Consul's Address wants
 * it, or null when it is one. The port has its own setting, and an IPv6
 * address goes without brackets.
 */
function hostProblem(host: string): string | null {
  if (/[[\]]/.test(host)) return "expected a host name or IP, an IPv6 address without brackets";
  const colons = host.split(":").length - 1;
  if (colons === 1) return "expected a host name or IP without a port (see NDLS_SERVICE_PORT)";
  if (colons > 1) {
    try {
      new URL(`http://[${host}]/`);
      return null;
    } catch {
      return "expected a host name or IP";
    }
  }
  // Underscores and a trailing dot occur in real host names, and resolvers take them.
  return /^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?$/.test(host)
    ? null
    : "expected a host name or IP";
}

/** A URL or address for a message: any `user:password@` part replaced. */
function withoutCredentials(text: string): string {
  return text.replace(/^([a-z][a-z0-9+.-]*:\/\/)?[^@]*@/i, "$1[credentials]@");
}

/** Parses `host:port`, `[v6]:port` or a bare port (loopback) for a listener. */
export function parseListenAddr(text: string): { hostname: string; port: number } | null {
  const m = /^(?:(\[[^\]]+\]|[^:]*):)?(\d+)$/.exec(text.trim());
  if (!m) return null;
  const port = Number(m[2]);
  if (port > 65535) return null;
  // Go's ":port" (as in LiteFS's http.addr) is every interface, written out.
  const host = m[1] === undefined
    ? "127.0.0.1"
    : m[1] === ""
    ? "0.0.0.0"
    : m[1].replace(/^\[|\]$/g, "");
  return { hostname: host, port };
}

/**
 * An env lookup for litefs.yml's expansion that survives variables outside
 * the supervisor's `--allow-env` list: LiteFS expands the whole file, but we
 * read three keys, so a Nomad variable in `lease.advertise-url` is no concern.
 * Such a reference stays as written (`${NAME}`) and its name lands in `hidden`.
 */
function hiddenAware(
  env: ConfigSources["env"],
  hidden: Set<string>,
): (name: string) => string | undefined {
  return (name) => {
    try {
      return env(name);
    } catch (e) {
      // `${VAR=default}` makes Go look up a name with "=" in it: no such
      // variable can exist, so it expands to nothing, as in LiteFS.
      if (e instanceof TypeError) return undefined;
      if (!(e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied)) {
        throw e;
      }
      hidden.add(name);
      return `\${${name}}`;
    }
  };
}

function safeHostname(src: ConfigSources): string {
  try {
    return src.systemHostname();
  } catch {
    return "localhost";
  }
}

function errText(e: unknown): string {
  if (e instanceof Deno.errors.NotFound) return "file not found";
  if (e instanceof Deno.errors.PermissionDenied) return "permission denied";
  const msg = e instanceof Error ? e.message : String(e);
  // The YAML parser ends its first line with ":" before quoting the source.
  return msg.split("\n")[0].replace(/:\s*$/, "");
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === "object" && !(o instanceof Secret)) {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
