import { assertEquals } from "./support/assert.ts";
import { type ApiView, deriveRole } from "../lib/role.ts";

const api = (over: Partial<ApiView> = {}): ApiView => ({
  reachable: true,
  wedged: false,
  isPrimary: true,
  primaryHostname: null,
  detail: "",
  ...over,
});

Deno.test("a present .primary means replica even when the API claims primary", () => {
  const r = deriveRole(api(), { state: "present", hostname: "node-b" }, "api");
  assertEquals([r.kind, r.primary], ["replica", "node-b"]);
});

Deno.test("the API's isPrimary with .primary absent means primary", () => {
  assertEquals(deriveRole(api(), { state: "absent" }, "api").kind, "primary");
});

Deno.test("an absent .primary alone is not proof of primacy", () => {
  const down = api({ reachable: false, isPrimary: null, detail: "connection refused" });
  const r = deriveRole(down, { state: "absent" }, "api");
  assertEquals(r.kind, "unknown");
  assertEquals(
    r.reason,
    "LiteFS API unreachable (connection refused); .primary absent proves nothing",
  );
});

Deno.test("file mode lets an absent .primary decide when the API is unreachable", () => {
  const down = api({ reachable: false, isPrimary: null });
  assertEquals(deriveRole(down, { state: "absent" }, "file").kind, "primary");
  assertEquals(deriveRole(null, { state: "absent" }, "file").kind, "primary");
});

Deno.test("file mode does not promote while LiteFS's API is wedged (stream open, /info failing)", () => {
  const wedged = api({ reachable: false, wedged: true, isPrimary: false, detail: "/info: 500" });
  const r = deriveRole(wedged, { state: "absent" }, "file");
  assertEquals(r.kind, "unknown");
  assertEquals(r.reason, "LiteFS API not answering (/info: 500); .primary absent proves nothing");
});

Deno.test("file mode still obeys a reachable API that says replica", () => {
  assertEquals(deriveRole(api({ isPrimary: false }), { state: "absent" }, "file").kind, "replica");
});

Deno.test("isPrimary false without hostname is a replica with no known primary", () => {
  const r = deriveRole(api({ isPrimary: false }), { state: "absent" }, "api");
  assertEquals([r.kind, r.primary], ["replica", null]);
});

Deno.test("an unreadable mount makes a primary claim unknown", () => {
  const r = deriveRole(api(), { state: "error", detail: "ENOTCONN" }, "api");
  assertEquals(r.kind, "unknown");
});

Deno.test("nothing is primary before the first read of .primary", () => {
  assertEquals(deriveRole(api(), { state: "unread" }, "api").kind, "unknown");
  assertEquals(deriveRole(null, { state: "unread" }, "file").kind, "unknown");
});
