import { assert, assertEquals, assertIncludes } from "./support/assert.ts";
import { ConfigError, type ConfigSources, loadConfig, SETTINGS } from "../lib/config.ts";
import { compilePermissionFlags } from "./support/permissions.ts";

function sources(env: Record<string, string>, files: Record<string, string> = {}): ConfigSources {
  return {
    env: (n) => env[n],
    readTextFile: (p) => {
      if (p in files) return files[p];
      throw new Deno.errors.NotFound(p);
    },
    systemHostname: () => "sys-host",
  };
}

function problems(env: Record<string, string>, files: Record<string, string> = {}): string[] {
  try {
    loadConfig(sources(env, files));
  } catch (e) {
    if (e instanceof ConfigError) return [...e.problems];
    throw e;
  }
  return [];
}

Deno.test("defaults work with no litefs.yml at the default path", () => {
  const c = loadConfig(sources({ HOSTNAME: "node-a" }));
  assertEquals(c.mountDir, "/data");
  assertEquals(c.litefsApi, "http://127.0.0.1:20202");
  assertEquals(c.pollIntervalMs, 200);
  assertEquals(c.stopTimeoutMs, 10_000);
  assertEquals(c.consul.url, "http://127.0.0.1:8500");
  assertEquals(c.consul.serviceId, "navidrome-node-a");
  assertEquals(c.consul.checkHttpUrl, "http://127.0.0.1:4533/ping");
  assertEquals(c.statusAddr, null);
  assert(Object.isFrozen(c) && Object.isFrozen(c.consul));
});

Deno.test("the poll interval default is at most 250ms", () => {
  assert(loadConfig(sources({})).pollIntervalMs <= 250);
});

Deno.test("litefs.yml supplies the mount dir and API address, with LiteFS env expansion", () => {
  const yml = 'fuse:\n  dir: "${MNT}"\nhttp:\n  addr: ":${API_PORT}"\nlease:\n  type: consul\n';
  const c = loadConfig(
    sources({ NDLS_LITEFS_CONFIG: "/x/litefs.yml", MNT: "/litefs", API_PORT: "30303" }, {
      "/x/litefs.yml": yml,
    }),
  );
  assertEquals(c.mountDir, "/litefs");
  assertEquals(c.litefsApi, "http://127.0.0.1:30303");
});

/** Sources whose env lookup refuses every name outside `allowed`, like `--allow-env`. */
function permitted(env: Record<string, string>, allowed: RegExp, files: Record<string, string>) {
  const src = sources(env, files);
  return {
    ...src,
    env: (n: string) => {
      if (!allowed.test(n)) throw new Deno.errors.NotCapable(`Requires env access to "${n}"`);
      return env[n];
    },
  };
}

/** The compiled binary's `--allow-env` list as a pattern (`NDLS_*` and friends). */
const PERMITTED = (() => {
  const flag = compilePermissionFlags().find((f) => f.startsWith("--allow-env="))!;
  const names = flag.slice("--allow-env=".length).split(",");
  const alternatives = names.map((n) => n.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace("*", ".*"));
  return new RegExp(`^(${alternatives.join("|")})$`);
})();

Deno.test("a litefs.yml variable the supervisor may not read is harmless outside the keys it uses", () => {
  const yml = 'fuse:\n  dir: /data\nlease:\n  advertise-url: "http://${NOMAD_IP}:20202"\n';
  const c = loadConfig(
    permitted({ NDLS_LITEFS_CONFIG: "/l.yml", NOMAD_IP: "10.0.0.1" }, PERMITTED, {
      "/l.yml": yml,
    }),
  );
  assertEquals(c.mountDir, "/data");
});

Deno.test("a litefs.yml variable the supervisor may not read, in a key it uses, is one line naming it", () => {
  const yml = 'fuse:\n  dir: "${NOMAD_DIR}"\nhttp:\n  addr: "${NOMAD_ADDR}"\n';
  const env = { NDLS_LITEFS_CONFIG: "/l.yml" };
  const found = (() => {
    try {
      loadConfig(permitted(env, PERMITTED, { "/l.yml": yml }));
    } catch (e) {
      if (e instanceof ConfigError) return [...e.problems];
      throw e;
    }
    return [];
  })();
  assertEquals(found.length, 2);
  assertIncludes(found[0], "fuse.dir uses ${NOMAD_DIR}, which the supervisor may not read");
  assertIncludes(found[0], "set NDLS_MOUNT_DIR instead");
  assertIncludes(found[1], "http.addr uses ${NOMAD_ADDR}");
  assertIncludes(found[1], "set NDLS_LITEFS_API instead");
  const overridden = loadConfig(
    permitted(
      { ...env, NDLS_MOUNT_DIR: "/mnt", NDLS_LITEFS_API: "http://127.0.0.1:1" },
      PERMITTED,
      { "/l.yml": yml },
    ),
  );
  assertEquals(overridden.mountDir, "/mnt");
});

Deno.test("an explicitly named litefs.yml that is missing is an error", () => {
  assertEquals(problems({ NDLS_LITEFS_CONFIG: "/nope.yml" }), [
    'NDLS_LITEFS_CONFIG="/nope.yml": file not found',
  ]);
});

Deno.test("invalid YAML in litefs.yml names the file", () => {
  const p = problems({ NDLS_LITEFS_CONFIG: "/l.yml" }, { "/l.yml": "fuse: [unclosed" });
  assertEquals(p.length, 1);
  assertIncludes(p[0], 'NDLS_LITEFS_CONFIG="/l.yml": ');
  assertIncludes(p[0], "at line 1, column");
  assert(!p[0].endsWith(":") && !p[0].includes("\n"), `one clean line: ${JSON.stringify(p[0])}`);
});

Deno.test("Nomad's port variables are the default service address and port", () => {
  const c = loadConfig(
    sources({ NOMAD_HOST_IP_navidrome: "10.0.0.5", NOMAD_HOST_PORT_navidrome: "24533" }),
  );
  assertEquals([c.consul.address, c.consul.port], ["10.0.0.5", 24533]);
  assertEquals(c.consul.checkHttpUrl, "http://10.0.0.5:24533/ping");
});

Deno.test("CONSUL_HTTP_ADDR is read with or without a scheme, and CONSUL_HTTP_SSL picks https", () => {
  assertEquals(
    loadConfig(sources({ CONSUL_HTTP_ADDR: "10.1.1.1:8501" })).consul.url,
    "http://10.1.1.1:8501",
  );
  assertEquals(
    loadConfig(sources({ CONSUL_HTTP_ADDR: "consul:8501", CONSUL_HTTP_SSL: "true" })).consul.url,
    "https://consul:8501",
  );
  assertEquals(
    loadConfig(sources({ CONSUL_HTTP_ADDR: "https://c.example:8501/" })).consul.url,
    "https://c.example:8501",
  );
});

Deno.test("the token file wins over CONSUL_HTTP_TOKEN and the token never prints", () => {
  const c = loadConfig(
    sources({ CONSUL_HTTP_TOKEN: "env-secret", CONSUL_HTTP_TOKEN_FILE: "/t" }, {
      "/t": "file-secret\n",
    }),
  );
  assertEquals(c.consul.token?.reveal(), "file-secret");
  const printed = JSON.stringify(c) + Deno.inspect(c, { depth: 10 }) + String(c.consul.token);
  assert(!printed.includes("file-secret") && !printed.includes("env-secret"));
});

const bad: [string, Record<string, string>, string][] = [
  [
    "NDLS_POLL_INTERVAL",
    { NDLS_POLL_INTERVAL: "fast" },
    'NDLS_POLL_INTERVAL="fast": expected a duration such as 250ms, 10s or 1m',
  ],
  [
    "NDLS_STOP_TIMEOUT",
    { NDLS_STOP_TIMEOUT: "10" },
    'NDLS_STOP_TIMEOUT="10": expected a duration such as 250ms, 10s or 1m',
  ],
  [
    "NDLS_WATCH",
    { NDLS_WATCH: "maybe" },
    'NDLS_WATCH="maybe": expected true or false (or 1/0, yes/no, on/off)',
  ],
  [
    "NDLS_MAX_FAILURES",
    { NDLS_MAX_FAILURES: "0" },
    'NDLS_MAX_FAILURES="0": expected a whole number from 1 to 1000',
  ],
  [
    "NDLS_LEADERSHIP",
    { NDLS_LEADERSHIP: "vote" },
    'NDLS_LEADERSHIP="vote": expected one of api, file',
  ],
  [
    "NDLS_LOG_FORMAT",
    { NDLS_LOG_FORMAT: "xml" },
    'NDLS_LOG_FORMAT="xml": expected one of text, json',
  ],
  [
    "NDLS_HEALTH_URL",
    { NDLS_HEALTH_URL: "ftp://x/ping" },
    'NDLS_HEALTH_URL="ftp://x/ping": expected an http:// or https:// URL',
  ],
  [
    "NDLS_LITEFS_API",
    { NDLS_LITEFS_API: "nonsense" },
    'NDLS_LITEFS_API="nonsense": expected an http:// or https:// URL',
  ],
  [
    "NDLS_MOUNT_DIR",
    { NDLS_MOUNT_DIR: "data" },
    'NDLS_MOUNT_DIR="data": expected an absolute path',
  ],
  [
    "NDLS_SERVICE_NAME",
    { NDLS_SERVICE_NAME: "navi drome" },
    "NDLS_SERVICE_NAME=\"navi drome\": expected letters, digits and '-' (DNS-safe)",
  ],
  [
    "NDLS_SERVICE_PORT",
    { NDLS_SERVICE_PORT: "70000" },
    'NDLS_SERVICE_PORT="70000": expected a port from 1 to 65535',
  ],
  [
    "NDLS_DEREGISTER_AFTER",
    { NDLS_DEREGISTER_AFTER: "30s" },
    'NDLS_DEREGISTER_AFTER="30s": must be at least 60s',
  ],
  [
    "NDLS_REPLICA_SERVICE_NAME",
    { NDLS_REPLICA_SERVICE_NAME: "navidrome" },
    'NDLS_REPLICA_SERVICE_NAME="navidrome": must differ from NDLS_SERVICE_NAME',
  ],
  [
    "NDLS_STATUS_ADDR",
    { NDLS_STATUS_ADDR: "localhost" },
    'NDLS_STATUS_ADDR="localhost": expected host:port, :port (every interface) or a port (binds 127.0.0.1)',
  ],
  [
    "CONSUL_HTTP_ADDR",
    { CONSUL_HTTP_ADDR: "unix:///var/run/consul.sock" },
    'CONSUL_HTTP_ADDR="unix:///var/run/consul.sock": unix sockets are not supported; use host:port or http(s)://host:port',
  ],
  [
    "CONSUL_HTTP_TOKEN_FILE",
    { CONSUL_HTTP_TOKEN_FILE: "/missing" },
    'CONSUL_HTTP_TOKEN_FILE="/missing": file not found',
  ],
  [
    "CONSUL_CACERT",
    { CONSUL_CACERT: "/missing.pem" },
    'CONSUL_CACERT="/missing.pem": file not found',
  ],
  [
    "NDLS_RESTART_DELAY_MAX",
    { NDLS_RESTART_DELAY: "10s", NDLS_RESTART_DELAY_MAX: "5s" },
    "NDLS_RESTART_DELAY_MAX: must not be shorter than NDLS_RESTART_DELAY",
  ],
  [
    "NDLS_LITEFS_API=off",
    { NDLS_LITEFS_API: "off" },
    "NDLS_LITEFS_API=off: with the API off the role can never be known; also set NDLS_LEADERSHIP=file",
  ],
];
for (const [name, env, line] of bad) {
  Deno.test(`a bad ${name} is one line naming the variable`, () => {
    assertEquals(problems(env), [line]);
  });
}

Deno.test("the unknown-role grace must end before LiteFS's lease TTL", () => {
  assertEquals(problems({ NDLS_UNKNOWN_GRACE: "10s" }), [
    "NDLS_UNKNOWN_GRACE=\"10s\": must be shorter than LiteFS's lease TTL (lease.consul.ttl, 10s), or Navidrome could outlive this node's lease",
  ]);
  const yml = "lease:\n  type: consul\n  consul:\n    ttl: 30s\n";
  const longer = { NDLS_LITEFS_CONFIG: "/l.yml", NDLS_UNKNOWN_GRACE: "20s" };
  assertEquals(loadConfig(sources(longer, { "/l.yml": yml })).unknownGraceMs, 20_000);
  assertEquals(loadConfig(sources({ NDLS_UNKNOWN_GRACE: "0s" })).unknownGraceMs, 0);
  // The default grace against a shorter TTL names the default it found.
  const short = "lease:\n  type: consul\n  consul:\n    ttl: 3s\n";
  const p = problems({ NDLS_LITEFS_CONFIG: "/l.yml" }, { "/l.yml": short });
  assertEquals(p.length, 1);
  assertIncludes(
    p[0],
    'NDLS_UNKNOWN_GRACE="5s": must be shorter than LiteFS\'s lease TTL (lease.consul.ttl, 3s)',
  );
});

Deno.test("a duration over a day is refused: past 24.8 days a timer would fire at once", () => {
  assertEquals(problems({ NDLS_STOP_TIMEOUT: "999h" }), [
    'NDLS_STOP_TIMEOUT="999h": must be at most 24h',
  ]);
  assertEquals(loadConfig(sources({ NDLS_STABLE_AFTER: "24h" })).stableAfterMs, 86_400_000);
});

Deno.test("a CA file that looks like PEM but is not is one line naming CONSUL_CACERT", () => {
  const pem = "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n";
  const p = problems({ CONSUL_CACERT: "/ca.pem" }, { "/ca.pem": pem });
  assertEquals(p.length, 1);
  assertIncludes(p[0], 'CONSUL_CACERT="/ca.pem": unusable: ');
  assertEquals(problems({ CONSUL_CACERT: "/ca.txt" }, { "/ca.txt": "hello" }), [
    'CONSUL_CACERT="/ca.txt": not a PEM certificate',
  ]);
});

Deno.test("a service address with a port or brackets is refused, naming the fix", () => {
  assertEquals(problems({ NDLS_SERVICE_ADDRESS: "10.0.0.5:4533" }), [
    'NDLS_SERVICE_ADDRESS="10.0.0.5:4533": expected a host name or IP without a port (see NDLS_SERVICE_PORT)',
  ]);
  assertEquals(problems({ NDLS_SERVICE_ADDRESS: "[::1]" }), [
    'NDLS_SERVICE_ADDRESS="[::1]": expected a host name or IP, an IPv6 address without brackets',
  ]);
  const v6 = loadConfig(sources({ NDLS_SERVICE_ADDRESS: "fd00::5" }));
  assertEquals(v6.consul.checkHttpUrl, "http://[fd00::5]:4533/ping");
  assertEquals(loadConfig(sources({ NDLS_SERVICE_ADDRESS: "nas.lan" })).consul.address, "nas.lan");
});

Deno.test("the role tags are the supervisor's own", () => {
  assertEquals(problems({ NDLS_SERVICE_TAGS: "music,replica" }), [
    'NDLS_SERVICE_TAGS="music,replica": "replica" is the role tag the supervisor adds itself',
  ]);
});

Deno.test("a token with a line break inside is refused without printing it", () => {
  const secret = "SECRETPART1\nSECRETPART2";
  for (
    const p of [
      problems({ CONSUL_HTTP_TOKEN_FILE: "/t" }, { "/t": `${secret}\n` }),
      problems({ CONSUL_HTTP_TOKEN: secret }),
    ]
  ) {
    assertEquals(p.length, 1);
    assertIncludes(p[0], "the token has a space, line break or non-ASCII character inside");
    assert(!p[0].includes("SECRETPART"), p[0]);
  }
});

Deno.test("credentials in a URL setting are refused and never echoed", () => {
  const p = problems({
    CONSUL_HTTP_ADDR: "http://user:hunter2@127.0.0.1:8500",
    NDLS_LITEFS_API: "http://a:hunter2@127.0.0.1:20202",
  });
  assertEquals(p, [
    'NDLS_LITEFS_API="http://[credentials]@127.0.0.1:20202": credentials in the URL are not supported',
    'CONSUL_HTTP_ADDR="http://[credentials]@127.0.0.1:8500": credentials in the address are not supported; use CONSUL_HTTP_TOKEN',
  ]);
});

Deno.test("an http.addr LiteFS could not listen on is refused", () => {
  for (const addr of [":99999", "[]:20202", "localhost :20202"]) {
    const yml = `http:\n  addr: "${addr}"\n`;
    const p = problems({ NDLS_LITEFS_CONFIG: "/l.yml" }, { "/l.yml": yml });
    assertEquals(p, [`NDLS_LITEFS_CONFIG="/l.yml": "http.addr" "${addr}" is not host:port`]);
  }
});

Deno.test("several bad values are all reported, one line each", () => {
  assertEquals(problems({ NDLS_WATCH: "x", NDLS_POLL_INTERVAL: "y" }).length, 2);
});

Deno.test("the status listener binds every interface for Go's :port", () => {
  assertEquals(loadConfig(sources({ NDLS_STATUS_ADDR: ":9464" })).statusAddr, {
    hostname: "0.0.0.0",
    port: 9464,
  });
});

Deno.test("host names with underscores or a trailing dot are service addresses", () => {
  for (const host of ["node_a.example.com", "nomad-1.example.com."]) {
    assertEquals(loadConfig(sources({ NDLS_SERVICE_ADDRESS: host })).consul.address, host);
  }
});

Deno.test("a bad Nomad address or port is reported under the Nomad variable it came from", () => {
  assertEquals(
    problems({ NOMAD_HOST_IP_navidrome: "10.0.0.5:1", NOMAD_HOST_PORT_navidrome: "x" }),
    [
      'NOMAD_HOST_IP_navidrome="10.0.0.5:1": expected a host name or IP without a port (see NDLS_SERVICE_PORT)',
      'NOMAD_HOST_PORT_navidrome="x": expected a port from 1 to 65535',
    ],
  );
});

Deno.test("a token put in CONSUL_HTTP_TOKEN_FILE by mistake is never echoed", () => {
  const token = "6f1c2b5e-0d5a-4f7e-9c1b-2a3b4c5d6e7f";
  const p = problems({ CONSUL_HTTP_TOKEN_FILE: token });
  assertEquals(p, [
    "CONSUL_HTTP_TOKEN_FILE (value hidden: not a path; is it the token itself?): file not found",
  ]);
});

Deno.test("credentials with a slash or a space in the password are still hidden", () => {
  const p = problems({
    CONSUL_HTTP_ADDR: "http://admin:s3cr/et@consul:8500",
    NDLS_HEALTH_URL: "http://admin:p w@127.0.0.1:4533/ping",
  });
  assertEquals(p.length, 2);
  for (const line of p) {
    assert(!line.includes("s3cr") && !line.includes("p w"), line);
    assertIncludes(line, "[credentials]@");
  }
});

Deno.test("${VAR=default} in litefs.yml expands to nothing, as in LiteFS, instead of failing", () => {
  const yml = "# candidate: ${LITEFS_CANDIDATE=true}\nfuse:\n  dir: /data\n";
  const src = sources({}, { "/l.yml": yml });
  // Deno's own lookup, which throws for a name with "=" in it.
  const env = (n: string) => n === "NDLS_LITEFS_CONFIG" ? "/l.yml" : Deno.env.get(n);
  assertEquals(loadConfig({ ...src, env }).mountDir, "/data");
});

Deno.test("the status listener binds loopback for a bare port", () => {
  assertEquals(loadConfig(sources({ NDLS_STATUS_ADDR: "9464" })).statusAddr, {
    hostname: "127.0.0.1",
    port: 9464,
  });
});

Deno.test("every documented setting has a name, a default and a meaning", () => {
  const names = new Set(SETTINGS.map((s) => s.name));
  assertEquals(names.size, SETTINGS.length);
  for (const s of SETTINGS) assert(s.default !== "" && s.meaning !== "", s.name);
});

Deno.test("the README documents every setting with its default and meaning", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const rows = readme.split("\n").filter((l) => l.startsWith("| `"));
  for (const s of SETTINGS) {
    const row = rows.find((l) => l.startsWith(`| \`${s.name}\``));
    assert(row, `a README row for ${s.name}`);
    const [, , def, meaning] = row.split("|").map((c) => c.trim());
    assertEquals([def, meaning], [s.default, s.meaning], s.name);
  }
});
