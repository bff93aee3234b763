import assert from "node:assert/strict";
import { EVENT_BUFFER_SIZE, LiteFsSim, type LiteFsSimOptions } from "./support/litefs_sim.ts";
import { waitFor } from "./support/wait.ts";

const SIM = new URL("./support/litefs_sim.ts", import.meta.url).pathname;

/** Runs `fn` against a fresh simulator in a temp mount dir, then stops it and removes the dir. */
async function withSim(
  opts: Partial<LiteFsSimOptions>,
  fn: (sim: LiteFsSim, mountDir: string) => Promise<void>,
): Promise<void> {
  const mountDir = await Deno.makeTempDir({ prefix: "litefs-sim-" });
  const sim = await LiteFsSim.start({ mountDir, hostname: "node-a", ...opts });
  try {
    await fn(sim, mountDir);
  } finally {
    await sim.stop();
    await Deno.remove(mountDir, { recursive: true });
  }
}

/** Reads an `/events` body line by line, remembering partial text. */
class Lines {
  readonly response: Response;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #decoder = new TextDecoder();
  #text = "";

  private constructor(response: Response) {
    this.response = response;
    this.#reader = response.body!.getReader();
  }

  static async open(sim: LiteFsSim): Promise<Lines> {
    return new Lines(await fetch(`${sim.url}/events`));
  }

  /** The next whole line, parsed as JSON. */
  async next(): Promise<Record<string, unknown>> {
    for (;;) {
      const nl = this.#text.indexOf("\n");
      if (nl >= 0) {
        const line = this.#text.slice(0, nl);
        this.#text = this.#text.slice(nl + 1);
        return JSON.parse(line);
      }
      const { done, value } = await this.#reader.read();
      if (done) throw new Error(`stream ended; unread: ${JSON.stringify(this.#text)}`);
      this.#text += this.#decoder.decode(value, { stream: true });
    }
  }

  /** Everything left in the body and how the body ended. */
  async rest(): Promise<{ text: string; end: "eof" | "error" }> {
    try {
      for (;;) {
        const { done, value } = await this.#reader.read();
        if (done) return { text: this.#text, end: "eof" };
        this.#text += this.#decoder.decode(value, { stream: true });
      }
    } catch {
      return { text: this.#text, end: "error" };
    }
  }

  async close(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
  }
}

async function getInfo(sim: LiteFsSim): Promise<Record<string, unknown>> {
  return await (await fetch(`${sim.url}/info`)).json();
}

async function readPrimaryFile(mountDir: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(`${mountDir}/.primary`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

Deno.test("the events stream starts with init", async () => {
  await withSim({ primaryHostname: "node-b" }, async (sim) => {
    const lines = await Lines.open(sim);
    try {
      assert.deepEqual(lines.response.headers.get("content-type"), "application/json");
      assert.match(lines.response.headers.get("litefs-id") ?? "", /^[0-9A-F]{16}$/);
      assert.deepEqual(await lines.next(), {
        type: "init",
        data: { isPrimary: false, hostname: "node-b" },
      });
    } finally {
      await lines.close();
    }
  });
});

Deno.test("init omits the hostname on a primary and on a replica that knows no primary", async () => {
  for (const opts of [{ isPrimary: true }, { isPrimary: false }]) {
    await withSim(opts, async (sim) => {
      const lines = await Lines.open(sim);
      try {
        assert.deepEqual(await lines.next(), { type: "init", data: { isPrimary: opts.isPrimary } });
      } finally {
        await lines.close();
      }
    });
  }
});

Deno.test("setReplica writes .primary with the hostname and a newline", async () => {
  await withSim({ isPrimary: true }, async (sim, mountDir) => {
    assert.deepEqual(await readPrimaryFile(mountDir), null);
    sim.setReplica("node-b");
    assert.deepEqual(await readPrimaryFile(mountDir), "node-b\n");
    sim.setReplica(null);
    assert.deepEqual(await readPrimaryFile(mountDir), null);
    sim.setReplica("node-c");
    sim.setPrimary();
    assert.deepEqual(await readPrimaryFile(mountDir), null);
  });
});

Deno.test("a replica started with a known primary has .primary from the start", async () => {
  await withSim({ primaryHostname: "node-b" }, async (_sim, mountDir) => {
    assert.deepEqual(await readPrimaryFile(mountDir), "node-b\n");
  });
});

Deno.test("/info names this node as primary when primary and an empty hostname when none is known", async () => {
  await withSim({ isPrimary: true }, async (sim) => {
    const res = await fetch(`${sim.url}/info`);
    // LiteFS sets no Content-Type on /info; Go sniffs its indented JSON as text.
    assert.deepEqual(res.headers.get("content-type"), "text/plain; charset=utf-8");
    const body = await res.text();
    assert.ok(body.startsWith('{\n  "clusterID": "LFSC') && body.endsWith("}\n"), body);
    const info = JSON.parse(body);
    assert.match(info.clusterID, /^LFSC[0-9A-F]{16}$/);
    assert.deepEqual({ ...info, clusterID: "" }, {
      clusterID: "",
      isPrimary: true,
      candidate: true,
      path: "/var/lib/litefs",
      primary: { hostname: "node-a" },
    });
    sim.setReplica(null);
    assert.deepEqual((await getInfo(sim)).primary, { hostname: "" });
    sim.setReplica("node-b");
    const replica = await getInfo(sim);
    assert.deepEqual([replica.isPrimary, replica.primary], [false, { hostname: "node-b" }]);
  });
});

Deno.test("each role change is sent at once as a primaryChange line", async () => {
  await withSim({}, async (sim) => {
    const lines = await Lines.open(sim);
    try {
      await lines.next();
      sim.setReplica("node-b");
      assert.deepEqual(await lines.next(), {
        type: "primaryChange",
        data: { isPrimary: false, hostname: "node-b" },
      });
      sim.setPrimary();
      assert.deepEqual(await lines.next(), { type: "primaryChange", data: { isPrimary: true } });
      sim.setReplica(null);
      assert.deepEqual(await lines.next(), { type: "primaryChange", data: { isPrimary: false } });
      // LiteFS repeats unchanged states; so does the simulator.
      sim.setReplica(null);
      assert.deepEqual(await lines.next(), { type: "primaryChange", data: { isPrimary: false } });
    } finally {
      await lines.close();
    }
  });
});

Deno.test("emitTx sends a tx event shaped like LiteFS's", async () => {
  await withSim({ isPrimary: true }, async (sim) => {
    const lines = await Lines.open(sim);
    try {
      await lines.next();
      sim.emitTx();
      sim.emitTx();
      const first = await lines.next();
      const second = await lines.next();
      assert.deepEqual([first.type, first.db], ["tx", "navidrome.db"]);
      const data = first.data as Record<string, unknown>;
      assert.deepEqual(Object.keys(data), [
        "txID",
        "postApplyChecksum",
        "pageSize",
        "commit",
        "timestamp",
      ]);
      assert.deepEqual(data.txID, "0000000000000001");
      assert.deepEqual((second.data as Record<string, unknown>).txID, "0000000000000002");
      assert.match(data.postApplyChecksum as string, /^[0-9a-f]{16}$/);
      assert.match(data.timestamp as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z$/);
    } finally {
      await lines.close();
    }
  });
});

Deno.test("emitRaw sends text verbatim, so one line can arrive in two pieces", async () => {
  await withSim({}, async (sim) => {
    const lines = await Lines.open(sim);
    try {
      await lines.next();
      sim.emitRaw('{"type":"primaryChange","da');
      sim.emitRaw('ta":{"isPrimary":true}}\nnot json\n');
      assert.deepEqual(await lines.next(), { type: "primaryChange", data: { isPrimary: true } });
      sim.dropStreams({ clean: true });
      assert.deepEqual(await lines.rest(), { text: "not json\n", end: "eof" });
    } finally {
      await lines.close();
    }
  });
});

Deno.test("a dropped stream mid-line leaves a partial line", async () => {
  await withSim({ primaryHostname: "node-b" }, async (sim) => {
    const lines = await Lines.open(sim);
    try {
      await lines.next();
      sim.dropStreams({ midLine: true });
      const { text, end } = await lines.rest();
      assert.deepEqual(end, "error");
      assert.ok(text.length > 0 && !text.includes("\n"), JSON.stringify(text));
      assert.ok(
        '{"type":"primaryChange","data":{"isPrimary":false,"hostname":"node-b"}}'.startsWith(text),
      );
      assert.deepEqual(sim.streamCount, 0);
    } finally {
      await lines.close();
    }
  });
});

Deno.test("a dropped stream breaks the body after the last whole line", async () => {
  await withSim({}, async (sim) => {
    const lines = await Lines.open(sim);
    try {
      await lines.next();
      sim.emitTx();
      await lines.next();
      sim.dropStreams();
      assert.deepEqual(await lines.rest(), { text: "", end: "error" });
    } finally {
      await lines.close();
    }
  });
});

Deno.test("a clean drop ends the body normally and the API keeps serving", async () => {
  await withSim({}, async (sim) => {
    const lines = await Lines.open(sim);
    try {
      await lines.next();
      sim.dropStreams({ clean: true });
      assert.deepEqual(await lines.rest(), { text: "", end: "eof" });
      assert.deepEqual((await getInfo(sim)).isPrimary, false);
    } finally {
      await lines.close();
    }
  });
});

Deno.test("setApiDown refuses connections and comes back on the same port", async () => {
  await withSim({ isPrimary: true }, async (sim) => {
    const url = sim.url;
    const lines = await Lines.open(sim);
    try {
      await lines.next();
      sim.setApiDown(true);
      assert.deepEqual((await lines.rest()).end, "error");
      await assert.rejects(() => fetch(`${url}/info`));
      sim.setPrimary();
      sim.setApiDown(false);
      assert.deepEqual(sim.url, url);
      const info = await waitFor(() => getInfo(sim), { timeoutMs: 2000, what: "/info back up" });
      assert.deepEqual(info.isPrimary, true);
    } finally {
      await lines.close();
    }
  });
});

Deno.test("silentEvents changes /info and .primary but sends no event", async () => {
  await withSim({ isPrimary: true }, async (sim, mountDir) => {
    const lines = await Lines.open(sim);
    try {
      await lines.next();
      sim.silentEvents(true);
      sim.setReplica("node-c");
      assert.deepEqual(await readPrimaryFile(mountDir), "node-c\n");
      assert.deepEqual((await getInfo(sim)).isPrimary, false);
      sim.silentEvents(false);
      // Events arrive in order, so a tx as the next line proves nothing was sent for the change.
      sim.emitTx();
      assert.deepEqual((await lines.next()).type, "tx");
      const again = await Lines.open(sim);
      try {
        assert.deepEqual(await again.next(), {
          type: "init",
          data: { isPrimary: false, hostname: "node-c" },
        });
      } finally {
        await again.close();
      }
    } finally {
      await lines.close();
    }
  });
});

Deno.test("many concurrent readers each get every event", async () => {
  await withSim({}, async (sim) => {
    const readers = await Promise.all(Array.from({ length: 40 }, () => Lines.open(sim)));
    try {
      await Promise.all(readers.map((r) => r.next()));
      assert.deepEqual(sim.streamCount, 40);
      sim.setReplica("node-b");
      sim.emitTx();
      sim.setPrimary();
      const seen = await Promise.all(
        readers.map(async (r) => [(await r.next()).type, (await r.next()).type, await r.next()]),
      );
      for (const got of seen) {
        assert.deepEqual(got, ["primaryChange", "tx", {
          type: "primaryChange",
          data: { isPrimary: true },
        }]);
      }
    } finally {
      await Promise.all(readers.map((r) => r.close()));
    }
  });
});

Deno.test("readers that hang up are released", async () => {
  await withSim({}, async (sim) => {
    const readers = await Promise.all(Array.from({ length: 20 }, () => Lines.open(sim)));
    await Promise.all(readers.map((r) => r.next()));
    assert.deepEqual(sim.streamCount, 20);
    await Promise.all(readers.map((r) => r.close()));
    await waitFor(() => sim.streamCount === 0, { timeoutMs: 3000, what: "streams released" });
    const lines = await Lines.open(sim);
    try {
      assert.deepEqual((await lines.next()).type, "init");
    } finally {
      await lines.close();
    }
  });
});

Deno.test("a reader that falls 1024 events behind gets its backlog, then a clean end", async () => {
  await withSim({}, async (sim) => {
    const slow = await Lines.open(sim);
    const fast = await Lines.open(sim);
    try {
      await slow.next();
      await fast.next();
      const pad = "x".repeat(16 * 1024);
      let sent = 0;
      let fastSeen = 0;
      const fastReading = (async () => {
        while (fastSeen < sent || sim.streamCount === 2) {
          await fast.next();
          fastSeen++;
        }
      })();
      // Small bursts with pauses let the simulator write between them, so only
      // the reader that stops reading builds up a backlog.
      while (sim.streamCount === 2 && sent < 20 * EVENT_BUFFER_SIZE) {
        sim.emitRaw(JSON.stringify({ n: sent, pad }) + "\n");
        sent++;
        if (sent % 16 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
      }
      assert.deepEqual(sim.streamCount, 1, "the slow reader was cut off");
      // The event that overflowed the backlog was not delivered to the slow reader.
      const delivered = sent - 1;
      const { text, end } = await slow.rest();
      const got = text.split("\n").filter((l) => l).map((l) => JSON.parse(l).n);
      assert.deepEqual(end, "eof");
      assert.deepEqual(got.length, delivered);
      assert.deepEqual(got[delivered - 1], delivered - 1);
      sim.emitTx();
      await fastReading;
      assert.deepEqual(fastSeen, sent);
      assert.deepEqual((await fast.next()).type, "tx");
    } finally {
      await slow.close();
      await fast.close();
    }
  });
});

Deno.test("requests records the path of every request", async () => {
  await withSim({}, async (sim) => {
    const before = Date.now();
    await getInfo(sim);
    await (await fetch(`${sim.url}/nope?x=1`)).body?.cancel();
    const lines = await Lines.open(sim);
    await lines.next();
    await lines.close();
    assert.deepEqual(sim.requests.map((r) => r.path), ["/info", "/nope", "/events"]);
    assert.ok(sim.requests.every((r) => r.at >= before && r.at <= Date.now()));
  });
});

Deno.test("unknown paths answer 404 and other methods 405, as LiteFS does", async () => {
  await withSim({}, async (sim) => {
    const missing = await fetch(`${sim.url}/nope`);
    assert.deepEqual([missing.status, await missing.text()], [404, "404 page not found\n"]);
    const post = await fetch(`${sim.url}/info`, { method: "POST", body: "ignored" });
    assert.deepEqual([post.status, await post.text()], [405, "method not allowed\n"]);
    // The request body was consumed, so the connection still serves the next request.
    assert.deepEqual((await getInfo(sim)).isPrimary, false);
  });
});

Deno.test("the CLI prints its URL and flips role on stdin commands", async () => {
  const mountDir = await Deno.makeTempDir({ prefix: "litefs-sim-cli-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SIM, "--mount", mountDir, "--hostname", "node-a"],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const stdin = child.stdin.getWriter();
  const stdout = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    let printed = "";
    while (!printed.includes("\n")) printed += (await stdout.read()).value ?? "";
    const url = printed.trim();
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const send = (line: string) => stdin.write(new TextEncoder().encode(line + "\n"));
    await send("replica node-b");
    await waitFor(async () => (await readPrimaryFile(mountDir)) === "node-b\n", {
      timeoutMs: 3000,
      what: ".primary naming node-b",
    });
    await send("primary");
    await waitFor(async () => (await readPrimaryFile(mountDir)) === null, {
      timeoutMs: 3000,
      what: ".primary to vanish",
    });
    const info = await (await fetch(`${url}/info`)).json();
    assert.deepEqual(info.isPrimary, true);
  } finally {
    await stdin.close().catch(() => {});
    child.kill("SIGTERM");
    const status = await child.status;
    await stdout.cancel();
    await Deno.remove(mountDir, { recursive: true });
    assert.deepEqual(status.code, 0);
  }
});
