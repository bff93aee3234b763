/**
 * The supervisor's version, taken from deno.json so there is one place to bump.
 * @module
 */

import denoJson from "../deno.json" with { type: "json" };

/** Semantic version of this supervisor build. */
export const VERSION: string = denoJson.version;
