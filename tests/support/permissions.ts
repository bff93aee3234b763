/**
 * Test-side access to the production permission flags (defined once, in
 * `dev/permissions.ts`, from deno.json's compile task) and the stand-in app.
 * @module
 */

export { compilePermissionFlags, MAIN_TS, supervisorCommand } from "../../dev/permissions.ts";

/** Absolute path of the stand-in app. */
export const STAND_IN_APP: string = new URL("./stand_in_app.ts", import.meta.url).pathname;
