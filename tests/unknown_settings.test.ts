import { assertEquals } from "./support/assert.ts";
import { unknownSettings } from "../lib/unknown_settings.ts";

const KNOWN = ["NDLS_STOP_TIMEOUT", "NDLS_POLL_INTERVAL", "NDLS_WATCH"];

Deno.test("an NDLS_ name that is no setting is found, with the setting it likely meant", () => {
  assertEquals(
    unknownSettings(["PATH", "NDLS_STOP_TIMOUT", "NDLS_WATCH", "NDLS_FROBNICATE"], KNOWN),
    [
      { name: "NDLS_FROBNICATE", suggestion: null },
      { name: "NDLS_STOP_TIMOUT", suggestion: "NDLS_STOP_TIMEOUT" },
    ],
  );
});

Deno.test("a name in the wrong case is unknown, and the suggestion is the right case", () => {
  assertEquals(unknownSettings(["NDLS_stop_timeout", "ndls_watch"], KNOWN), [
    { name: "NDLS_stop_timeout", suggestion: "NDLS_STOP_TIMEOUT" },
    { name: "ndls_watch", suggestion: "NDLS_WATCH" },
  ]);
});

Deno.test("known settings and other prefixes are not reported", () => {
  assertEquals(unknownSettings(["NDLS_WATCH", "ND_DATAFOLDER", "CONSUL_HTTP_ADDR"], KNOWN), []);
});
