/**
 * The few calls of Navidrome's own API the end-to-end tests make, to prove
 * that what one primary wrote is there on the next: the first admin user, a
 * playlist, and an image uploaded for it (which Navidrome stores as a file in
 * `<DataFolder>/artwork`, outside the database).
 * @module
 */

/** Navidrome's header for the UI's JWT (`consts.UIAuthorizationHeader`). */
const AUTH_HEADER = "X-ND-Authorization";
/** Every call is local to the bridge: a slow answer is a failure, not a wait. */
const TIMEOUT_MS = 5000;

/** A 1×1 PNG: the smallest image Navidrome's upload accepts (it decodes the header). */
export const TINY_PNG = Uint8Array.from(
  atob(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==",
  ),
  (c) => c.charCodeAt(0),
);

/** An HTTP answer, kept whole so a failing test can show it. */
export interface Answer {
  status: number;
  body: string;
}

async function call(url: string, init: RequestInit): Promise<Answer> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(TIMEOUT_MS) });
  return { status: res.status, body: await res.text() };
}

function expectOk(what: string, a: Answer): unknown {
  if (a.status < 200 || a.status > 299) {
    throw new Error(`${what}: HTTP ${a.status} ${a.body.slice(0, 300)}`);
  }
  return JSON.parse(a.body);
}

/** A Navidrome server at `base` (e.g. `http://10.77.0.11:4533`). */
export class NavidromeApi {
  readonly base: string;
  #token: string | null = null;

  constructor(base: string) {
    this.base = base.replace(/\/+$/, "");
  }

  /** Creates the first admin user (only possible on an empty database) and logs in as it. */
  async createAdmin(username: string, password: string): Promise<void> {
    const a = await call(`${this.base}/auth/createAdmin`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username, password }),
    });
    this.#token = (expectOk("createAdmin", a) as { token: string }).token;
  }

  /** Logs in; the raw answer, so a test can assert a refusal as well. */
  async login(username: string, password: string): Promise<Answer> {
    const a = await call(`${this.base}/auth/login`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username, password }),
    });
    if (a.status === 200) this.#token = JSON.parse(a.body).token;
    return a;
  }

  #auth(): Record<string, string> {
    if (!this.#token) throw new Error("not logged in");
    return { [AUTH_HEADER]: `Bearer ${this.#token}` };
  }

  /** Creates a playlist; returns its ID. */
  async createPlaylist(name: string): Promise<string> {
    const a = await call(`${this.base}/api/playlist`, {
      method: "POST",
      headers: { ...this.#auth(), "Content-Type": "application/json" },
      body: JSON.stringify({ name, public: false }),
    });
    return (expectOk("create playlist", a) as { id: string }).id;
  }

  /** A playlist as the native API returns it. */
  async playlist(id: string): Promise<Record<string, unknown>> {
    const a = await call(`${this.base}/api/playlist/${id}`, { headers: this.#auth() });
    return expectOk("get playlist", a) as Record<string, unknown>;
  }

  /** Uploads a playlist image; the raw answer (Navidrome writes it under `<DataFolder>/artwork`). */
  async uploadPlaylistImage(id: string, png: Uint8Array<ArrayBuffer>): Promise<Answer> {
    const form = new FormData();
    form.append("image", new Blob([png], { type: "image/png" }), "cover.png");
    return await call(`${this.base}/api/playlist/${id}/image`, {
      method: "POST",
      headers: this.#auth(),
      body: form,
    });
  }
}
