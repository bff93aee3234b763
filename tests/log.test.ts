import { assertEquals, assertExcludes, assertIncludes } from "./support/assert.ts";
import { logger, setupLogging } from "../lib/log.ts";
import { Secret } from "../lib/secret.ts";

const TOKEN = "5ecre7-log-70ken";

function capture(format: "text" | "json"): string[] {
  const lines: string[] = [];
  setupLogging({
    format,
    level: "info",
    secrets: [new Secret(TOKEN)],
    write: (l) => lines.push(l),
  });
  return lines;
}

Deno.test("JSON lines carry the text line's message, with each value in its own field", () => {
  const lines = capture("json");
  logger().info("role {from} -> {to} after {n} tries", { from: "replica", to: "primary", n: 3 });
  const rec = JSON.parse(lines[0]);
  assertEquals(rec.message, "role replica -> primary after 3 tries");
  assertEquals([rec.from, rec.to, rec.n], ["replica", "primary", 3]);
  assertEquals(rec.level, "INFO");
  assertEquals(rec.logger, "supervisor");
});

Deno.test("text lines render values bare", () => {
  const lines = capture("text");
  logger("consul").warn("Consul {msg}", { msg: "register x: 500 boom" });
  assertIncludes(lines[0], "[WRN] supervisor·consul: Consul register x: 500 boom");
});

Deno.test("a secret is scrubbed from both formats, in the message and in fields", () => {
  for (const format of ["text", "json"] as const) {
    const lines = capture(format);
    logger().error("agent said {body}", { body: `bad token ${TOKEN}` });
    assertExcludes(lines.join(""), TOKEN);
    assertIncludes(lines[0], "[redacted]");
  }
});
