import { assertEquals, assertIncludes } from "./support/assert.ts";
import { errorText } from "../lib/error_text.ts";
import { freePort } from "./support/wait.ts";

Deno.test("a refused fetch says connection refused, not just fetch failed", async () => {
  const err = await fetch(`http://127.0.0.1:${freePort()}/ping`).then(() => null, (e) => e);
  const text = errorText(err);
  assertIncludes(text, "Connection refused");
  assertEquals(text.includes("error sending request"), false);
});

Deno.test("other errors give the first line of their message", () => {
  assertEquals(errorText(new Error("first\nsecond")), "first");
  assertEquals(errorText("plain"), "plain");
});
