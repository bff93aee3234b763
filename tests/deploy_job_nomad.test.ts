/**
 * job.nomad, parsed with HashiCorp's own HCL parser (`@cdktf/hcl2json`), and
 * checked against what the supervisor, LiteFS and Navidrome need from it.
 * Nomad cannot run here, so its run-time interpolation is played by
 * {@link containerEnv} with stand-in values.
 * @module
 */

import { parse as parseHcl } from "@cdktf/hcl2json";
import { parse as parseToml } from "smol-toml";
import { parse as parseYaml } from "yaml";
import { assert, assertEquals } from "./support/assert.ts";
import { loadConfig, SETTINGS } from "../lib/config.ts";
import { unknownSettings } from "../lib/unknown_settings.ts";
import { parseDuration } from "../lib/duration.ts";
import { expandLiteFsEnv, parseLiteFsYml } from "../lib/litefs_yml.ts";
import { artworkOnMount, navidromeFoldersOnMount } from "../lib/navidrome_folders.ts";
import { DEREGISTER_BUDGET_MS } from "../lib/supervisor.ts";

type Block = Record<string, unknown>;

const ROOT = new URL("../", import.meta.url);
const LITEFS_YML = await Deno.readTextFile(new URL("litefs.yml", ROOT));
const NAVIDROME_TOML = parseToml(await Deno.readTextFile(new URL("navidrome.toml", ROOT)));
/** Where the Dockerfile installs navidrome.toml (its test pins the same path). */
const NAVIDROME_TOML_IN_IMAGE = "/etc/navidrome/navidrome.toml";

/**
 * After the supervisor exits, LiteFS still releases the Consul lease (one
 * request to the local agent) and unmounts, and init exits: seconds at most.
 */
const LITEFS_EXIT_MARGIN_MS = 5_000;
/** Nomad's client `max_kill_timeout` default: a longer kill_timeout is cut to it. */
const NOMAD_DEFAULT_MAX_KILL_TIMEOUT_MS = 30_000;
/** Navidrome's default `ND_PORT`. */
const NAVIDROME_DEFAULT_PORT = 4533;

/** Stand-ins for what Nomad interpolates when it places an allocation. */
const NODE_NAME = "node-a";
const NODE_IP = "192.0.2.10";
const HOST_PORTS: Record<string, number> = { navidrome: 24533, litefs: 30202 };

/** The one block in an unlabelled block list (`network { … }`). */
function single(value: unknown, what: string): Block {
  assert(Array.isArray(value) && value.length === 1, `expected exactly one ${what} block`);
  return value[0] as Block;
}

/** The body of the one labelled block of a kind (`job "x" { … }`). */
function labelled(value: unknown, what: string): Block {
  const entries = Object.values((value ?? {}) as Record<string, unknown>);
  assert(entries.length === 1, `expected exactly one ${what} block`);
  return single(entries[0], what);
}

/** Every block of a possibly absent, unlabelled list (`volume_mount`, `constraint`). */
function all(value: unknown): Block[] {
  return Array.isArray(value) ? (value as Block[]) : [];
}

/** Every labelled block of a kind, by label (`volume "x"`, `port "y"`). */
function byLabel(value: unknown, what: string): Record<string, Block> {
  const out: Record<string, Block> = {};
  for (const [label, blocks] of Object.entries((value ?? {}) as Record<string, unknown>)) {
    out[label] = single(blocks, `${what} "${label}"`);
  }
  return out;
}

const spec = await parseHcl("job.nomad", await Deno.readTextFile(new URL("job.nomad", ROOT)));
const job = labelled(spec.job, "job");
const group = labelled(job.group, "group");
const task = labelled(group.task, "task");
const config = single(task.config, "task config");
const env = single(task.env, "env") as Record<string, string>;
const ports = byLabel(single(group.network, "network").port, "port");
const volumes = byLabel(group.volume, "volume");
const mounts = all(task.volume_mount);

/**
 * What Nomad substitutes for `${…}` in job.nomad. Only the runtime variables
 * this job uses are known here, so a typo or a port label the group does not
 * declare (which Nomad would pass on unexpanded or empty) fails the tests; a
 * new variable is added here on purpose.
 */
function nomadRuntimeValue(expr: string): string {
  if (expr === "node.unique.name") return NODE_NAME;
  if (expr === "attr.unique.network.ip-address") return NODE_IP;
  const m = /^NOMAD_HOST_(IP|PORT|ADDR)_(\w+)$/.exec(expr);
  assert(
    m && m[2] in ports,
    `job.nomad interpolates \${${expr}}: unknown here, or a port the group lacks`,
  );
  const port = String(HOST_PORTS[m[2]]);
  return m[1] === "IP" ? NODE_IP : m[1] === "PORT" ? port : `${NODE_IP}:${port}`;
}

/** The container's environment as Nomad would build it: its port variables plus job.nomad's env. */
function containerEnv(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const label of Object.keys(ports)) {
    for (const kind of ["IP", "PORT", "ADDR"]) {
      out[`NOMAD_HOST_${kind}_${label}`] = nomadRuntimeValue(`NOMAD_HOST_${kind}_${label}`);
    }
  }
  for (const [name, value] of Object.entries(env)) {
    out[name] = value.replace(/\$\{([^}]+)\}/g, (_, expr: string) => nomadRuntimeValue(expr));
  }
  return out;
}

/** The supervisor's configuration, loaded exactly as it would be inside the container. */
function supervisorConfig() {
  const e = containerEnv();
  return loadConfig({
    env: (n) => e[n],
    readTextFile: (p) => {
      if (p === "/etc/litefs.yml") return LITEFS_YML;
      throw new Deno.errors.NotFound(p);
    },
    systemHostname: () => "container-id",
  });
}

function mountDir(): string {
  const e = containerEnv();
  const dir = parseLiteFsYml(LITEFS_YML, (n) => e[n]).fuseDir;
  assert(dir, "litefs.yml sets no fuse.dir");
  return dir;
}

function inside(path: string, dir: string): boolean {
  return path === dir || path.startsWith(`${dir.replace(/\/+$/, "")}/`);
}

Deno.test("job.nomad is a service running at least two docker instances on distinct hosts", () => {
  assertEquals(job.type, "service");
  assert(typeof group.count === "number" && group.count >= 2, `count is ${group.count}`);
  assertEquals(task.driver, "docker");
  const distinct = [...all(job.constraint), ...all(group.constraint)].some((c) =>
    c.operator === "distinct_hosts" && String(c.value) === "true"
  );
  assert(distinct, "no distinct_hosts constraint");
});

Deno.test("job.nomad sets the data, cache, backup and config-file paths the deployment relies on", () => {
  assertEquals(env.ND_DATAFOLDER, "/shared_data");
  assertEquals(env.ND_CACHEFOLDER, "/shared_data/cache");
  assertEquals(env.ND_BACKUP_PATH, "/shared_data/backup");
  assertEquals(env.ND_CONFIGFILE, NAVIDROME_TOML_IN_IMAGE);
});

Deno.test("job.nomad keeps every Navidrome folder off the LiteFS mount, artwork included", () => {
  const e = containerEnv();
  const dir = mountDir();
  assertEquals(navidromeFoldersOnMount((n) => e[n], dir), []);
  // Uploaded images go to <DataFolder>/artwork, which the mount would refuse.
  assertEquals(artworkOnMount((n) => e[n], dir), null);
});

Deno.test("navidrome.toml puts only the database on the LiteFS mount, in WAL mode", () => {
  const dbPath = String(NAVIDROME_TOML.DbPath ?? "");
  const [file, query = ""] = dbPath.split("?");
  // Navidrome ignores ND_DBPATH: without this the database would sit in the
  // data folder on shared storage, and nothing would be replicated.
  assertEquals(file, `${mountDir()}/navidrome.db`);
  const params = new URLSearchParams(query);
  assertEquals(params.get("_journal_mode"), "WAL");
  assertEquals(params.get("_foreign_keys"), "on");
  assert(Number(params.get("_busy_timeout")) > 0, "no busy timeout in DbPath");
  assertEquals(Object.keys(NAVIDROME_TOML), ["DbPath"], "every other setting comes from job.nomad");
});

Deno.test("job.nomad mounts LiteFS's data dir, shared storage and read-only music as volumes", () => {
  const e = containerEnv();
  const litefs = parseYaml(expandLiteFsEnv(LITEFS_YML, (n) => e[n])) as { data?: { dir?: string } };
  const dataDir = litefs.data?.dir;
  assert(dataDir, "litefs.yml sets no data.dir");
  const mountOf = (path: string) =>
    mounts
      .filter((m) => inside(path, String(m.destination)))
      .sort((a, b) => String(b.destination).length - String(a.destination).length)[0];
  const writable = (m: Block | undefined) =>
    m !== undefined && m.read_only !== true && volumes[String(m.volume)]?.read_only !== true;

  const data = mountOf(dataDir);
  assert(writable(data), `${dataDir} is not on a writable volume`);
  assertEquals(
    volumes[String(data.volume)].type,
    "host",
    "LiteFS's data needs a node-local volume",
  );
  for (const name of ["ND_CACHEFOLDER", "ND_BACKUP_PATH"]) {
    const m = mountOf(e[name]);
    assert(writable(m), `${name}=${e[name]} is not on a writable volume`);
    assertEquals(m.destination, "/shared_data");
  }
  const music = mountOf(e.ND_MUSICFOLDER);
  assert(music, `ND_MUSICFOLDER=${e.ND_MUSICFOLDER} is not on a volume`);
  assert(music.read_only === true && volumes[String(music.volume)].read_only === true);
  // A volume at or under the FUSE mount would hide it or be hidden by it.
  const dir = mountDir();
  assertEquals(mounts.filter((m) => inside(String(m.destination), dir)), []);
});

Deno.test("job.nomad gives the container FUSE and an init that reaps orphans", () => {
  assertEquals(config.init, true);
  const caps = all(config.cap_add).map(String);
  const devices = all(config.devices).map((d) => d.host_path);
  assert(
    config.privileged === true || (caps.includes("SYS_ADMIN") && devices.includes("/dev/fuse")),
    "FUSE needs privileged = true, or cap_add SYS_ADMIN plus the /dev/fuse device",
  );
});

Deno.test("job.nomad's kill_timeout covers the supervisor's whole stop, within Nomad's cap", () => {
  assert(["SIGTERM", "SIGINT"].includes(String(task.kill_signal)), "LiteFS forwards only these");
  const kill = parseDuration(String(task.kill_timeout));
  assert(kill !== null, `kill_timeout ${task.kill_timeout} is not a duration`);
  const stop = supervisorConfig().stopTimeoutMs + DEREGISTER_BUDGET_MS;
  assert(
    kill > stop + LITEFS_EXIT_MARGIN_MS,
    `kill_timeout ${kill}ms leaves less than ${LITEFS_EXIT_MARGIN_MS}ms after the ${stop}ms stop`,
  );
  assert(kill <= NOMAD_DEFAULT_MAX_KILL_TIMEOUT_MS, "Nomad would cut kill_timeout to 30s");
});

Deno.test("job.nomad only interpolates Nomad runtime variables that exist", () => {
  for (const value of Object.values(containerEnv())) {
    assert(!value.includes("${"), `unexpanded: ${value}`);
  }
});

Deno.test("job.nomad's environment is accepted by the supervisor and points it at this node", () => {
  const c = supervisorConfig();
  assertEquals(c.hostname, NODE_NAME);
  assertEquals(c.mountDir, mountDir());
  assertEquals(c.consul.url, `http://${NODE_IP}:8500`);
  // The registration must carry the host side of Nomad's port mapping.
  assertEquals(c.consul.address, NODE_IP);
  assertEquals(c.consul.port, HOST_PORTS.navidrome);
  // Every NDLS_ variable it sets is a setting: a typo would silently keep a default.
  assertEquals(unknownSettings(Object.keys(containerEnv()), SETTINGS.map((x) => x.name)), []);
});

Deno.test("job.nomad maps the Navidrome and LiteFS ports the supervisor and litefs.yml use", () => {
  const e = containerEnv();
  assertEquals(ports.navidrome?.to, Number(e.ND_PORT ?? NAVIDROME_DEFAULT_PORT));
  const httpAddr = parseLiteFsYml(LITEFS_YML, (n) => e[n]).httpAddr;
  assertEquals(ports.litefs?.to, Number(httpAddr?.split(":").pop()));
  assertEquals(all(config.ports).map(String).sort(), ["litefs", "navidrome"]);
});

Deno.test("job.nomad registers no Nomad service for Navidrome (the supervisor registers the primary)", () => {
  const name = supervisorConfig().consul.serviceName;
  for (const s of [...all(group.service), ...all(task.service)]) {
    assert(s.name !== name, `a Nomad service "${name}" would register every node`);
    assert(s.port !== "navidrome", `Nomad service "${s.name}" points at Navidrome's port`);
  }
});

Deno.test("job.nomad's updates never replace every instance at once", () => {
  const update = single(group.update ?? job.update, "update");
  const parallel = Number(update.max_parallel ?? 1);
  assert(parallel >= 1 && parallel < Number(group.count), `max_parallel ${parallel}`);
});
