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

Deno.test("the request's own addresses are dropped, so a repeated failure reads the same", () => {
  const cause = new Error(
    "error sending request from 127.0.0.1:48370 for http://127.0.0.1:45325/info (127.0.0.1:45325): client error (SendRequest): connection closed before message completed",
  );
  assertEquals(
    errorText(new TypeError("fetch failed", { cause })),
    "connection closed before message completed",
  );
});
