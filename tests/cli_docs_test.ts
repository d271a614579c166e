/** docs/CLI.md is what the commands' --help texts say today (issue 25 §9: the reference cannot drift). */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { cliReference } from "../scripts/cli_docs.ts";

Deno.test("docs/CLI.md is generated from every command's --help text and matches it", async () => {
  const want = await cliReference();
  const have = await Deno.readTextFile(fileURLToPath(new URL("../docs/CLI.md", import.meta.url)));
  assert.ok(have === want, "docs/CLI.md differs from the --help texts: run `deno task cli-docs`");
  for (const name of ["produce", "consume", "cluster", "topics", "groups", "kill", "status"]) {
    assert.match(have, new RegExp(`^## yak ${name}$`, "m"), `yak ${name} has a section`);
  }
});
