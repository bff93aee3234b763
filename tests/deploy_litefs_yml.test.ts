/**
 * litefs.yml, parsed with `yaml` after LiteFS's own `${VAR}` expansion and
 * checked against LiteFS v0.5.14's config schema (`cmd/litefs/config.go`,
 * decoded with yaml.v3 `KnownFields(true)`: unknown keys are fatal), the
 * supervisor's argument parser, and the environment job.nomad provides.
 * @module
 */

import { parse as parseHcl } from "@cdktf/hcl2json";
import { parse as parseYaml } from "yaml";
import { assert, assertEquals } from "./support/assert.ts";
import { parseArgs } from "../lib/cli.ts";
import { consulUrl } from "../lib/config.ts";
import { parseDuration } from "../lib/duration.ts";
import { expandLiteFsEnv, parseLiteFsYml } from "../lib/litefs_yml.ts";

/** A value type as LiteFS's Go config struct decodes it. */
type Leaf = "string" | "bool" | "duration" | "int" | "strings" | "exec";
/** A mapping of LiteFS's config: every key it knows, and its type. */
interface Schema {
  [key: string]: Leaf | Schema;
}

/** Every key of LiteFS v0.5.14's `Config` struct (backup's delays are `yaml:"-"`). */
const LITEFS_0_5_14: Schema = {
  "exit-on-error": "bool",
  "skip-sync": "bool",
  "strict-verify": "bool",
  exec: "exec",
  data: {
    dir: "string",
    compress: "bool",
    retention: "duration",
    "retention-monitor-interval": "duration",
  },
  fuse: { dir: "string", "allow-other": "bool", debug: "bool" },
  http: { addr: "string", "snapshot-timeout": "duration" },
  proxy: {
    addr: "string",
    target: "string",
    db: "string",
    "max-lag": "duration",
    debug: "bool",
    passthrough: "strings",
    "always-forward": "strings",
    "primary-redirect-timeout": "duration",
    "read-timeout": "duration",
    "read-header-timeout": "duration",
    "write-timeout": "duration",
    "idle-timeout": "duration",
  },
  lease: {
    type: "string",
    hostname: "string",
    "advertise-url": "string",
    candidate: "bool",
    promote: "bool",
    "reconnect-delay": "duration",
    "demote-delay": "duration",
    databases: "strings",
    consul: { url: "string", key: "string", ttl: "duration", "lock-delay": "duration" },
  },
  backup: {
    type: "string",
    path: "string",
    url: "string",
    cluster: "string",
    "auth-token": "string",
  },
  log: { format: "string", timestamp: "bool", debug: "bool" },
  tracing: {
    enabled: "bool",
    path: "string",
    "max-size": "int",
    "max-count": "int",
    compress: "bool",
  },
};

const EXEC_ENTRY: Schema = { cmd: "string", "if-candidate": "bool" };

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function leafOk(type: Leaf, v: unknown, at: string): string[] {
  switch (type) {
    case "string":
      return typeof v === "string" ? [] : [`${at}: expected a string`];
    case "bool":
      return typeof v === "boolean" ? [] : [`${at}: expected true or false`];
    case "int":
      return Number.isInteger(v) ? [] : [`${at}: expected a whole number`];
    case "duration":
      return typeof v === "string" && parseDuration(v) !== null
        ? []
        : [`${at}: expected a duration such as 10s`];
    case "strings":
      return Array.isArray(v) && v.every((s) => typeof s === "string")
        ? []
        : [`${at}: expected a list of strings`];
    case "exec":
      if (typeof v === "string") return [];
      if (!Array.isArray(v)) return [`${at}: expected a command or a list of {cmd, if-candidate}`];
      return v.flatMap((e, i) => schemaProblems(e, EXEC_ENTRY, `${at}[${i}]`));
  }
}

/** Every key LiteFS would refuse and every value it could not decode, one line each. */
function schemaProblems(doc: unknown, schema: Schema, at = ""): string[] {
  if (!isMapping(doc)) return [`${at || "top level"}: expected a mapping`];
  return Object.entries(doc).flatMap(([key, v]) => {
    const path = at ? `${at}.${key}` : key;
    const type = schema[key];
    if (type === undefined) return [`${path}: unknown key (LiteFS refuses to start)`];
    if (v === null) return [];
    return typeof type === "string" ? leafOk(type, v, path) : schemaProblems(v, type, path);
  });
}

const ROOT = new URL("../", import.meta.url);
const TEXT = await Deno.readTextFile(new URL("litefs.yml", ROOT));
const RAW = parseYaml(TEXT) as Record<string, Record<string, unknown>>;

/** job.nomad's task env, values as written (Nomad's `${…}` not yet interpolated). */
async function jobEnv(): Promise<Record<string, string>> {
  const spec = await parseHcl("job.nomad", await Deno.readTextFile(new URL("job.nomad", ROOT)));
  const first = (v: unknown) => Object.values(v as Record<string, Record<string, unknown>[]>)[0][0];
  const task = first(first(first(spec.job).group).task);
  return (task.env as Record<string, string>[])[0];
}

/**
 * job.nomad's env as the container sees it, with stand-ins for what Nomad
 * interpolates (tests/deploy_job_nomad.test.ts checks those variables exist).
 */
async function containerEnv(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(await jobEnv())) {
    out[name] = value
      .replaceAll("${node.unique.name}", "node-a")
      .replaceAll("${attr.unique.network.ip-address}", "192.0.2.10")
      .replace(/\$\{NOMAD_HOST_ADDR_\w+\}/g, "192.0.2.10:30202");
  }
  return out;
}

/** litefs.yml as LiteFS decodes it inside the container. */
async function expanded(): Promise<Record<string, Record<string, unknown>>> {
  const env = await containerEnv();
  return parseYaml(expandLiteFsEnv(TEXT, (n) => env[n]));
}

/**
 * The exec command split into words. LiteFS uses a shell-words parser; with no
 * quotes, escapes or shell syntax in the command (asserted) that is a split on
 * whitespace.
 */
function execWords(): string[] {
  const exec = RAW.exec as unknown;
  const cmd = typeof exec === "string"
    ? exec
    : (exec as { cmd: string }[])[(exec as unknown[]).length - 1].cmd;
  assert(!/['"\\$`;&|<>()]/.test(cmd), `exec ${JSON.stringify(cmd)} needs a shell-words parser`);
  return cmd.trim().split(/\s+/);
}

Deno.test("litefs.yml uses only keys and value types LiteFS v0.5.14 accepts", async () => {
  assertEquals(schemaProblems(await expanded(), LITEFS_0_5_14), []);
});

Deno.test("the schema check refuses what LiteFS would refuse", () => {
  assertEquals(schemaProblems({ fuse: { dir: "/data", dirs: "/x" } }, LITEFS_0_5_14), [
    "fuse.dirs: unknown key (LiteFS refuses to start)",
  ]);
  assertEquals(
    schemaProblems({ lease: { candidate: "yes", consul: { ttl: 10 } } }, LITEFS_0_5_14),
    [
      "lease.candidate: expected true or false",
      "lease.consul.ttl: expected a duration such as 10s",
    ],
  );
  assertEquals(schemaProblems({ exec: [{ cmd: "x", "if-primary": true }] }, LITEFS_0_5_14), [
    "exec[0].if-primary: unknown key (LiteFS refuses to start)",
  ]);
});

Deno.test("litefs.yml mounts /data, keeps LiteFS's data in /var/lib/litefs and serves :20202", async () => {
  const doc = await expanded();
  assertEquals(doc.fuse.dir, "/data");
  assertEquals(doc.data.dir, "/var/lib/litefs");
  assertEquals(doc.http.addr, ":20202");
  // The supervisor reads the same facts from this file (the lease TTL is LiteFS's default).
  const env = await containerEnv();
  assertEquals(parseLiteFsYml(TEXT, (n) => env[n]), {
    fuseDir: "/data",
    httpAddr: ":20202",
    leaseTtl: null,
  });
});

Deno.test("litefs.yml leases through Consul with every node-specific value from the environment", () => {
  const lease = RAW.lease as Record<string, unknown>;
  const consul = lease.consul as Record<string, unknown>;
  assertEquals(lease.type, "consul");
  for (const [key, v] of Object.entries({ ...lease, ...prefixed(consul) })) {
    if (["type", "promote", "consul"].includes(key)) continue;
    assert(/^\$\{\w+\}$/.test(String(v)), `lease.${key} is ${JSON.stringify(v)}, not a \${VAR}`);
  }
  // A restarting node must not hand the lease over to itself.
  assert(lease.promote !== true, "lease.promote would move the primary on every restart");
});

function prefixed(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [`consul.${k}`, v]));
}

Deno.test("litefs.yml's exec runs the supervisor with Navidrome after --, as the supervisor parses it", () => {
  const [program, ...args] = execWords();
  assertEquals(program, "/usr/local/bin/navidrome-litefs-supervisor");
  assertEquals(parseArgs(args), { kind: "run", command: ["/app/navidrome"] });
});

Deno.test("every ${VAR} litefs.yml uses is set, non-empty, by job.nomad's env", async () => {
  const used = new Set<string>();
  expandLiteFsEnv(TEXT, (n) => {
    used.add(n);
    return "";
  });
  const env = await containerEnv();
  assert(used.size > 0, "litefs.yml uses no variables: the lease would be the same on every node");
  for (const name of used) {
    assert(env[name], `litefs.yml uses \${${name}}, which job.nomad does not set`);
  }
});

Deno.test("expanded with job.nomad's env, the lease names this node and reaches its agent", async () => {
  const env = await containerEnv();
  const lease = (await expanded()).lease;
  const consul = lease.consul as Record<string, unknown>;
  assertEquals(lease.candidate, true);
  // The supervisor's Meta `litefs_hostname` must be the name `.primary` shows.
  assertEquals(lease.hostname, env.NDLS_HOSTNAME);
  assertEquals(new URL(String(lease["advertise-url"])).port, "30202");
  // LiteFS needs a scheme; a path would make it prefix the key and register a catalog node;
  // the token comes from CONSUL_HTTP_TOKEN, never from the URL.
  const url = new URL(String(consul.url));
  assert(["http:", "https:"].includes(url.protocol), `consul.url ${consul.url} has no scheme`);
  assertEquals([url.pathname, url.username, url.password], ["/", "", ""]);
  // …and the supervisor reads the same agent address from the same variable.
  assertEquals(consulUrl(env.CONSUL_HTTP_ADDR, false), `${url.protocol}//${url.host}`);
  assert(String(consul.key).length > 0);
});
