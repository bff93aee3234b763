/**
 * `doctor`: the ad-hoc check a user runs against staging with the container's
 * configuration. It validates the settings, proves the Consul token's rights
 * with a throwaway registration (always removed, even on Ctrl-C), reads the
 * LiteFS role, and warns about Navidrome folders on the mount.
 * @module
 */

import type { Config } from "./config.ts";
import { ConsulAgent } from "./consul_agent.ts";
import { fetchInfo } from "./litefs_api.ts";
import { artworkOnMount, navidromeFoldersOnMount } from "./navidrome_folders.ts";
import { redact } from "./secret.ts";

/** One row of the doctor's table. */
export interface DoctorRow {
  check: string;
  result: "PASS" | "WARN" | "FAIL";
  detail: string;
}

/** The doctor's throwaway check never passes, so no consumer ever routes to it. */
const PROBE_CHECK_TTL = "1m";

/** Runs every check, prints the table, resolves with 0 (no FAIL) or 1. */
export async function runDoctor(
  config: Config | null,
  configError: unknown,
  print: (line: string) => void = console.log,
): Promise<number> {
  const rows = await doctorRows(config, configError);
  const secrets = config ? [config.consul.token] : [];
  for (const line of renderTable(rows)) print(redact(line, secrets));
  return rows.some((r) => r.result === "FAIL") ? 1 : 0;
}

/** Computes the rows (exported for tests). */
export async function doctorRows(
  config: Config | null,
  configError: unknown,
): Promise<DoctorRow[]> {
  if (!config) {
    const msg = configError instanceof Error ? configError.message : String(configError);
    return msg.split("\n").map((line) => ({ check: "settings", result: "FAIL", detail: line }));
  }
  const rows: DoctorRow[] = [{ check: "settings", result: "PASS", detail: "all settings valid" }];
  rows.push(...await consulRows(config));
  rows.push(await litefsRow(config));
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
    if (!self.ok) {
      rows.push({
        check: "consul agent",
        result: "FAIL",
        detail: `${config.consul.url}: ${self.message}`,
      });
      return rows;
    }
    const node = (self.value as { Config?: { NodeName?: string } }).Config?.NodeName ?? "?";
    rows.push({
      check: "consul agent",
      result: "PASS",
      detail: `${config.consul.url} (node ${node})`,
    });
    rows.push(await probeRegistration(agent, config));
  } finally {
    agent.close();
  }
  return rows;
}

/**
 * Registers and removes a throwaway instance of the real service name, which
 * proves `service:write` on it. A SIGINT/SIGTERM meanwhile still removes it.
 */
async function probeRegistration(agent: ConsulAgent, config: Config): Promise<DoctorRow> {
  const id = `${config.consul.serviceId}-doctor-${crypto.randomUUID().slice(0, 8)}`;
  let cleanup: Promise<unknown> | null = null;
  const removeNow = () => (cleanup ??= agent.deregister(id));
  const onSignal = async () => {
    await removeNow();
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    const reg = await agent.register({
      ID: id,
      Name: config.consul.serviceName,
      Tags: ["doctor"],
      Address: config.consul.address,
      Port: config.consul.port,
      Meta: { purpose: "navidrome-litefs doctor probe" },
      Checks: [{
        CheckID: `${id}:ttl`,
        Name: "doctor probe",
        TTL: PROBE_CHECK_TTL,
        Status: "critical",
      }],
    });
    if (!reg.ok) {
      return {
        check: "consul token",
        result: "FAIL",
        detail: `register ${config.consul.serviceName}: ${reg.message}`,
      };
    }
    const dereg = await removeNow() as Awaited<ReturnType<ConsulAgent["deregister"]>>;
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
      detail: `may register and deregister "${config.consul.serviceName}"`,
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
    const why = e instanceof Error ? e.message.split("\n")[0] : String(e);
    return { check: "litefs", result: "WARN", detail: `${config.litefsApi} unreachable: ${why}` };
  }
}

/** Renders rows as an aligned text table. */
export function renderTable(rows: readonly DoctorRow[]): string[] {
  const w = Math.max(5, ...rows.map((r) => r.check.length));
  return [
    `${"CHECK".padEnd(w)}  RESULT  DETAIL`,
    ...rows.map((r) => `${r.check.padEnd(w)}  ${r.result.padEnd(6)}  ${r.detail}`),
  ];
}
