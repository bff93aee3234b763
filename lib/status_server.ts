/**
 * The optional status listener: `GET /status` (JSON) and `GET /metrics`
 * (Prometheus text). Off unless NDLS_STATUS_ADDR is set; binds where that
 * says, loopback for a bare port.
 * @module
 */

import type { Supervisor } from "./supervisor.ts";

/** Serves /status and /metrics for `sup` until `signal` aborts. */
export function serveStatus(
  sup: Supervisor,
  addr: { hostname: string; port: number },
  signal: AbortSignal,
  onListen: (addr: Deno.NetAddr) => void = () => {},
): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ ...addr, signal, onListen }, (req) => {
    const path = new URL(req.url).pathname;
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("method not allowed\n", { status: 405, headers: { Allow: "GET, HEAD" } });
    }
    if (path === "/status") {
      return Response.json(sup.status());
    }
    if (path === "/metrics") {
      const s = sup.status();
      return new Response(sup.metrics.render(s.role, s.child.running), {
        headers: { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" },
      });
    }
    return new Response("not found: try /status or /metrics\n", { status: 404 });
  });
}
