import { assert, assertEquals } from "./support/assert.ts";
import { type ConfigSources, loadConfig } from "../lib/config.ts";
import { agentMatches, serviceDefinition } from "../lib/registration.ts";

const src = (env: Record<string, string>): ConfigSources => ({
  env: (n) => env[n],
  readTextFile: () => {
    throw new Deno.errors.NotFound();
  },
  systemHostname: () => "h",
});

Deno.test("the primary's definition has an HTTP check, a TTL check and the role tag", () => {
  const cfg = loadConfig(
    src({ HOSTNAME: "node-a", NDLS_SERVICE_TAGS: "music, traefik.enable=true" }),
  );
  const def = serviceDefinition(cfg, "primary", "1.2.3");
  assertEquals(def.ID, "navidrome-node-a");
  assertEquals(def.Name, "navidrome");
  assertEquals(def.Tags, ["music", "traefik.enable=true", "primary"]);
  assertEquals(def.Meta, {
    litefs_hostname: "node-a",
    supervisor_version: "1.2.3",
    role: "primary",
  });
  assertEquals(def.Checks.map((c) => c.CheckID), ["navidrome-node-a:http", "navidrome-node-a:ttl"]);
  assertEquals(def.Checks[0].HTTP, "http://127.0.0.1:4533/ping");
  assertEquals(def.Checks[1].TTL, "15s");
  assert(def.Checks.every((c) => c.DeregisterCriticalServiceAfter === "60s"));
});

Deno.test("the replica's definition uses its own name and ID, and only a TTL check", () => {
  const cfg = loadConfig(
    src({ HOSTNAME: "node-b", NDLS_REPLICA_SERVICE_NAME: "navidrome-replica" }),
  );
  const def = serviceDefinition(cfg, "replica", "1.2.3");
  assertEquals([def.ID, def.Name], ["navidrome-node-b-replica", "navidrome-replica"]);
  assertEquals(def.Checks.map((c) => c.CheckID), ["navidrome-node-b-replica:ttl"]);
  assertEquals(def.Tags, ["replica"]);
});

Deno.test("an altered registration is detected", () => {
  const cfg = loadConfig(src({ HOSTNAME: "node-a" }));
  const def = serviceDefinition(cfg, "primary", "1");
  const held = {
    ID: def.ID,
    Service: def.Name,
    Tags: ["primary"],
    Address: "",
    Port: 4533,
    Meta: def.Meta,
  };
  assert(agentMatches(held, def));
  assert(!agentMatches({ ...held, Port: 1 }, def));
  assert(!agentMatches({ ...held, Tags: [] }, def));
  assert(!agentMatches({ ...held, Meta: {} }, def));
});
