/**
 * Builds this node's Consul service definitions. Pure, so the exact JSON the
 * agent receives is pinned by tests.
 * @module
 */

import type { Config } from "./config.ts";
import { consulDuration } from "./duration.ts";
import type { SlotName } from "./decide.ts";
import type { AgentService, ServiceDefinition } from "./consul_agent.ts";

/** The IDs of one slot's service and of its TTL check. */
export interface SlotIds {
  serviceId: string;
  ttlCheckId: string;
}

/** Service and TTL-check IDs for a slot; the replica slot's ID carries a `-replica` suffix. */
export function slotIds(cfg: Config, slot: SlotName): SlotIds {
  const serviceId = slot === "primary" ? cfg.consul.serviceId : `${cfg.consul.serviceId}-replica`;
  return { serviceId, ttlCheckId: `${serviceId}:ttl` };
}

/**
 * The definition registered for a slot. The primary gets an HTTP check on
 * Navidrome's `/ping` and a TTL check that only the supervisor passes, and
 * only while LiteFS says primary: a registration left by a supervisor that
 * died or was demoted goes critical by itself within one TTL.
 */
export function serviceDefinition(cfg: Config, slot: SlotName, version: string): ServiceDefinition {
  const c = cfg.consul;
  const { serviceId, ttlCheckId } = slotIds(cfg, slot);
  const deregister = consulDuration(c.deregisterAfterMs);
  const ttlCheck = {
    CheckID: ttlCheckId,
    Name: slot === "primary" ? "LiteFS primary" : "LiteFS replica",
    TTL: consulDuration(c.ttlMs),
    // Registered only while LiteFS says this role, and passed at once after.
    Status: "passing",
    Notes: `Passed by navidrome-litefs supervisor while LiteFS says this node is ${slot}.`,
    DeregisterCriticalServiceAfter: deregister,
  };
  const checks: Record<string, unknown>[] = slot === "primary"
    ? [
      {
        CheckID: `${serviceId}:http`,
        Name: "Navidrome /ping",
        HTTP: c.checkHttpUrl,
        Method: "GET",
        Interval: consulDuration(c.checkIntervalMs),
        Timeout: consulDuration(c.checkTimeoutMs),
        // Registered only after Navidrome answered this URL: without an
        // initial status the check is critical until the agent's first probe,
        // which Consul staggers randomly within the interval.
        Status: "passing",
        DeregisterCriticalServiceAfter: deregister,
      },
      ttlCheck,
    ]
    : [ttlCheck];
  return {
    ID: serviceId,
    Name: slot === "primary" ? c.serviceName : c.replicaServiceName ?? `${c.serviceName}-replica`,
    Tags: [...c.tags.filter((t) => t !== slot), slot],
    Address: c.address,
    Port: c.port,
    Meta: { litefs_hostname: cfg.hostname, supervisor_version: version, role: slot },
    Checks: checks,
  };
}

/**
 * True when what the agent holds still is our definition (name, address,
 * port, tags, meta); anything else is repaired by registering again.
 */
export function agentMatches(held: AgentService, def: ServiceDefinition): boolean {
  const tags = [...(held.Tags ?? [])].sort();
  const want = [...def.Tags].sort();
  const meta = held.Meta ?? {};
  return held.Service === def.Name &&
    held.Port === def.Port &&
    (def.Address === "" || held.Address === def.Address) &&
    tags.length === want.length && tags.every((t, i) => t === want[i]) &&
    Object.entries(def.Meta).every(([k, v]) => meta[k] === v);
}
