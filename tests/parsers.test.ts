import { assert, assertEquals } from "./support/assert.ts";
import { consulDuration, formatDuration, parseDuration } from "../lib/duration.ts";
import { apiUrlFromHttpAddr, expandLiteFsEnv, parseLiteFsYml } from "../lib/litefs_yml.ts";
import { parseEventLine } from "../lib/litefs_api.ts";
import { parseArgs, resolveExecutable, UsageError } from "../lib/cli.ts";
import { redact, Secret } from "../lib/secret.ts";

const env = (vars: Record<string, string>) => (n: string) => vars[n];

Deno.test("durations parse Go-style and refuse bare numbers", () => {
  assertEquals(parseDuration("250ms"), 250);
  assertEquals(parseDuration("1m30s"), 90_000);
  assertEquals(parseDuration("1.5s"), 1500);
  assertEquals(parseDuration("0"), 0);
  assertEquals(parseDuration("10"), null);
  assertEquals(parseDuration("10 s"), null);
  assertEquals(parseDuration("s"), null);
  assertEquals(formatDuration(1500), "1.5s");
  assertEquals(formatDuration(90_000), "1m30s");
  assertEquals(consulDuration(60_000), "60s");
  assertEquals(consulDuration(1500), "1500ms");
});

Deno.test("LiteFS env expansion matches Go's os.Expand plus LiteFS's comparisons", () => {
  const e = env({ A: "x", B: "x", HOST: "node-a" });
  assertEquals(expandLiteFsEnv("$HOST/${HOST}", e), "node-a/node-a");
  assertEquals(expandLiteFsEnv('${A == "x"} ${A != "x"} ${A == \'y\'}', e), "true false false");
  assertEquals(expandLiteFsEnv("${A == B} ${A != B}", e), "true false");
  assertEquals(expandLiteFsEnv("$MISSING|${MISSING}", e), "|");
  assertEquals(expandLiteFsEnv("cost: $ 5 and $", e), "cost: $ 5 and $");
  assertEquals(expandLiteFsEnv("${unterminated", e), "unterminated");
  assertEquals(expandLiteFsEnv("a${}b", e), "ab");
});

Deno.test("litefs.yml yields fuse.dir, http.addr and the lease TTL", () => {
  const yml = 'fuse:\n  dir: "${MNT}"\nhttp:\n  addr: ":20202"\nlease:\n  type: consul\n' +
    '  consul:\n    ttl: "15s"\n';
  assertEquals(parseLiteFsYml(yml, env({ MNT: "/data" })), {
    fuseDir: "/data",
    httpAddr: ":20202",
    leaseTtl: "15s",
  });
  assertEquals(parseLiteFsYml("", env({})), { fuseDir: null, httpAddr: null, leaseTtl: null });
});

Deno.test("http.addr becomes a loopback URL for wildcard hosts", () => {
  assertEquals(apiUrlFromHttpAddr(":20202"), "http://127.0.0.1:20202");
  assertEquals(apiUrlFromHttpAddr("0.0.0.0:20202"), "http://127.0.0.1:20202");
  assertEquals(apiUrlFromHttpAddr("10.0.0.5:20202"), "http://10.0.0.5:20202");
});

Deno.test("event lines: leadership events parsed, tx and unknown ignored, garbage refused", () => {
  assertEquals(parseEventLine('{"type":"init","data":{"isPrimary":false,"hostname":"node-b"}}'), {
    type: "init",
    isPrimary: false,
    hostname: "node-b",
  });
  assertEquals(parseEventLine('{"type":"primaryChange","data":{"isPrimary":true}}'), {
    type: "primaryChange",
    isPrimary: true,
    hostname: null,
  });
  assertEquals(parseEventLine('{"type":"tx","db":"navidrome.db","data":{}}'), null);
  assertEquals(parseEventLine('{"type":"somethingNew"}'), null);
  for (
    const bad of ["garbage", "42", '{"type":"init"}', '{"type":"init","data":{"isPrimary":"yes"}}']
  ) {
    let threw = false;
    try {
      parseEventLine(bad);
    } catch {
      threw = true;
    }
    assert(threw, bad);
  }
});

Deno.test("the command line takes Navidrome's command after --", () => {
  assertEquals(parseArgs(["--", "/app/navidrome", "--port", "1"]), {
    kind: "run",
    command: ["/app/navidrome", "--port", "1"],
  });
  assertEquals(parseArgs(["run", "--", "x"]), { kind: "run", command: ["x"] });
  assertEquals(parseArgs(["doctor"]), { kind: "doctor", command: [] });
  assertEquals(parseArgs(["--version"]), { kind: "version" });
  for (const bad of [[], ["/app/navidrome"], ["run"], ["--bogus", "--", "x"]]) {
    let err: unknown;
    try {
      parseArgs(bad);
    } catch (e) {
      err = e;
    }
    assert(err instanceof UsageError, JSON.stringify(bad));
  }
});

Deno.test("executables resolve through PATH like execvp", () => {
  const exists = (p: string) => p === "/usr/bin/navidrome" || p === "/app/navidrome";
  assertEquals(resolveExecutable("navidrome", "/bin:/usr/bin", exists), "/usr/bin/navidrome");
  assertEquals(resolveExecutable("/app/navidrome", "", exists), "/app/navidrome");
  let err: unknown;
  try {
    resolveExecutable("nope", "/bin", exists);
  } catch (e) {
    err = e;
  }
  assert(err instanceof UsageError);
});

Deno.test("a Secret never prints, and redact scrubs it from any text", () => {
  const s = new Secret("s3cr3t");
  assertEquals(`${s}`, "[redacted]");
  assertEquals(JSON.stringify({ s }), '{"s":"[redacted]"}');
  assertEquals(Deno.inspect({ s }).includes("s3cr3t"), false);
  assertEquals(
    redact("token s3cr3t denied s3cr3t", [s, null]),
    "token [redacted] denied [redacted]",
  );
});
