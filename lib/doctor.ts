/**
 * `doctor`: the ad-hoc check a user runs against staging with the container's
 * configuration. It validates the settings, proves the Consul token's rights
 * with a throwaway registration (always removed, even on Ctrl-C), reads the
 * LiteFS role, and warns about Navidrome folders on the mount.
 * @module
 */

import { type Config, SETTINGS } from "./config.ts";
import { ConsulAgent } from "./consul_agent.ts";
import { fetchInfo } from "./litefs_api.ts";
import { artworkOnMount, navidromeFoldersOnMount } from "./navidrome_folders.ts";
import { readPrimaryFile } from "./primary_file.ts";
import { redact, Secret } from "./secret.ts";
import { environmentNames, unknownSettings } from "./unknown_settings.ts";
import { errorText } from "./error_text.ts";

/** One row of the doctor's table. */
export interface DoctorRow {
  check: string;
  result: "PASS" | "WARN" | "FAIL";
  detail: string;
}

/** The doctor's throwaway check never passes, so no consumer ever routes to it. */
const PROBE_CHECK_TTL = "1m";
/** Consul's minimum: a throwaway left by a killed doctor is reaped after this. */
const PROBE_DEREGISTER_AFTER = "1m";

/** Runs every check, prints the table, resolves with 0 (no FAIL) or 1. */
export async function runDoctor(
  config: Config | null,
  configError: unknown,
  print: (line: string) => void = console.log,
): Promise<number> {
  const rows = await doctorRows(config, configError);
  // Without a config the token is still in the environment; scrub it all the same.
  const secrets = config ? [config.consul.token] : [envToken()];
  for (const line of renderTable(rows)) print(redact(line, secrets));
  return rows.some((r) => r.result === "FAIL") ? 1 : 0;
}

function envToken(): Secret | null {
  try {
    const t = Deno.env.get("CONSUL_HTTP_TOKEN")?.trim();
    return t ? new Secret(t) : null;
  } catch {
    return null;
  }
}

/** Computes the rows (exported for tests). */
export async function doctorRows(
  config: Config | null,
  configError: unknown,
): Promise<DoctorRow[]> {
  // A typo is often the cause of a failing setting, so these come either way.
  const names = await environmentNames();
  const unknown: DoctorRow[] = names === null
    ? [{
      check: "settings",
      result: "WARN",
      detail: "unknown NDLS_ names not checked: `env` could not be run",
    }]
    : unknownSettings(names, SETTINGS.map((s) => s.name)).map((u): DoctorRow => ({
      check: "settings",
      result: "WARN",
      detail: `${u.name} is not a setting and is ignored` +
        (u.suggestion ? ` (did you mean ${u.suggestion}?)` : ""),
    }));
  if (!config) {
    const msg = configError instanceof Error ? configError.message : String(configError);
    const failed = msg.split("\n").map((line): DoctorRow => ({
      check: "settings",
      result: "FAIL",
      detail: line,
    }));
    return [...failed, ...unknown];
  }
  const rows: DoctorRow[] = [
    { check: "settings", result: "PASS", detail: "all settings valid" },
    ...unknown,
  ];
  rows.push(...await consulRows(config));
  rows.push(await litefsRow(config));
  rows.push(await mountRow(config.mountDir));
  const folders = navidromeFoldersOnMount((n) => Deno.env.get(n), config.mountDir);
  if (folders.length === 0) {
    rows.push({
      check: "navidrome folders",
      result: "PASS",
      detail: `none inside ${config.mountDir}`,
    });
  }
  for (const f of folders) {
    rows.push({
      check: "navidrome folders",
      result: "WARN",
      detail: `${f.setting} -> ${f.path} is inside the LiteFS mount (${f.why})`,
    });
  }
  const artwork = artworkOnMount((n) => Deno.env.get(n), config.mountDir);
  if (artwork) {
    rows.push({
      check: "navidrome folders",
      result: "WARN",
      detail: `${artwork}: uploaded images will fail (no setting moves Navidrome's artwork folder)`,
    });
  }
  return rows;
}

async function consulRows(config: Config): Promise<DoctorRow[]> {
  if (!config.consul.enabled) {
    return [{
      check: "consul",
      result: "WARN",
      detail: "NDLS_CONSUL=false: nothing is registered",
    }];
  }
  const agent = new ConsulAgent(config.consul);
  const rows: DoctorRow[] = [];
  try {
    const self = await agent.self();
    if (self.ok) {
      const node = (self.value as { Config?: { NodeName?: string } }).Config?.NodeName ?? "?";
      rows.push({
        check: "consul agent",
        result: "PASS",
        detail: `${config.consul.url} (node ${node})`,
      });
    } else if (self.kind === "denied" && /permission denied/i.test(self.message)) {
      // A known token without agent:read. The supervisor never reads
      // /v1/agent/self, so a token scoped to the service alone is fine; the
      // registration probe below decides whether the token works. (An
      // unknown token, "ACL not found", fails below like any other error.)
      rows.push({
        check: "consul agent",
        result: "WARN",
        detail: `${config.consul.url} reachable, but /v1/agent/self: ${self.message} ` +
          `(not needed by the supervisor)`,
      });
    } else {
      rows.push({
        check: "consul agent",
        result: "FAIL",
        detail: `${config.consul.url}: ${self.message}`,
      }, {
        check: "consul token",
        result: "WARN",
        detail: "not checked: it needs an agent that answers",
      });
      return rows;
    }
    const names = [config.consul.serviceName];
    if (config.consul.replicaServiceName) names.push(config.consul.replicaServiceName);
    for (const name of names) rows.push(await probeRegistration(agent, config, name));
  } finally {
    agent.close();
  }
  return rows;
}

/**
 * Registers and removes a throwaway instance of service `name`, which proves
 * `service:write` on it. A SIGINT/SIGTERM meanwhile still removes it: the
 * handler first lets an in-flight register settle (bounded by the Consul
 * timeout), because a deregister overtaking it would leave the throwaway
 * behind, then deregisters and exits 130.
 */
async function probeRegistration(
  agent: ConsulAgent,
  config: Config,
  name: string,
): Promise<DoctorRow> {
  const id = `${config.consul.serviceId}-doctor-${crypto.randomUUID().slice(0, 8)}`;
  let registering: Promise<unknown> = Promise.resolve();
  let cleanup: ReturnType<ConsulAgent["deregister"]> | null = null;
  const removeNow = () => (cleanup ??= registering.then(() => agent.deregister(id)));
  const onSignal = async () => {
    const res = await removeNow();
    console.error(
      res.ok
        ? `doctor interrupted: throwaway service ${id} removed`
        : `doctor interrupted: could not remove throwaway service ${id}: ${res.message}`,
    );
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    const pending = agent.register({
      ID: id,
      Name: name,
      Tags: ["doctor"],
      Address: config.consul.address,
      Port: config.consul.port,
      Meta: { purpose: "navidrome-litefs doctor probe" },
      Checks: [{
        CheckID: `${id}:ttl`,
        Name: "doctor probe",
        TTL: PROBE_CHECK_TTL,
        Status: "critical",
        // A doctor killed with SIGKILL cannot clean up; the agent's reaper then does.
        DeregisterCriticalServiceAfter: PROBE_DEREGISTER_AFTER,
      }],
    });
    registering = pending.catch(() => {});
    const reg = await pending;
    if (!reg.ok) {
      return {
        check: "consul token",
        result: "FAIL",
        detail: `register ${name}: ${reg.message}`,
      };
    }
    const dereg = await removeNow();
    if (!dereg.ok) {
      return {
        check: "consul token",
        result: "FAIL",
        detail: `deregister ${id}: ${dereg.message}`,
      };
    }
    return {
      check: "consul token",
      result: "PASS",
      detail: `may register and deregister "${name}"`,
    };
  } finally {
    await removeNow();
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}

async function litefsRow(config: Config): Promise<DoctorRow> {
  if (!config.litefsApi) {
    return { check: "litefs", result: "WARN", detail: "LiteFS API off (NDLS_LITEFS_API=off)" };
  }
  try {
    const info = await fetchInfo(config.litefsApi);
    const role = info.isPrimary
      ? "primary"
      : `replica${info.primaryHostname ? ` of ${info.primaryHostname}` : ", no primary known"}`;
    return { check: "litefs", result: "PASS", detail: `${config.litefsApi}: this node is ${role}` };
  } catch (e) {
    return {
      check: "litefs",
      result: "WARN",
      detail: `${config.litefsApi} unreachable: ${errorText(e)}`,
    };
  }
}

/**
 * The mount the supervisor polls: readable, and a mount point (a device of
 * its own, unlike its parent). A wrong NDLS_MOUNT_DIR keeps the role unknown
 * forever, so it is worth a row of its own. (Deno refuses `/proc/self/mounts`
 * without --allow-all, so the FUSE type itself cannot be read.)
 */
export async function mountRow(mountDir: string): Promise<DoctorRow> {
  const view = await readPrimaryFile(mountDir);
  if (view.state === "error") {
    return { check: "mount", result: "FAIL", detail: `${mountDir}: ${view.detail}` };
  }
  const seen = view.state === "present"
    ? `.primary names ${view.hostname} (replica)`
    : "no .primary (primary, or a replica not connected to one)";
  const [own, parent] = await Promise.all([Deno.stat(mountDir), Deno.stat(`${mountDir}/..`)]);
  if (own.dev === parent.dev) {
    return {
      check: "mount",
      result: "WARN",
      detail: `${mountDir} is a plain directory, not a mount: is LiteFS running here? ${seen}`,
    };
  }
  return { check: "mount", result: "PASS", detail: `${mountDir}: ${seen}` };
}

/** Renders rows as an aligned text table. */
export function renderTable(rows: readonly DoctorRow[]): string[] {
  const w = Math.max(5, ...rows.map((r) => r.check.length));
  return [
    `${"CHECK".padEnd(w)}  RESULT  DETAIL`,
    ...rows.map((r) => `${r.check.padEnd(w)}  ${r.result.padEnd(6)}  ${r.detail}`),
  ];
}
