/**
 * The README stays what a newcomer reads (issue 25 §9): one screen of quick
 * start, a table with every command `yak --help` lists, the guarantees in a
 * short list, and the reference in docs/ (docs/CLI.md is checked against the
 * help texts by cli_docs_test.ts).
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { commandsOf } from "../scripts/cli_docs.ts";
import { yak } from "./harness.ts";

const read = (path: string) => Deno.readTextFile(fileURLToPath(new URL(`../${path}`, import.meta.url)));

/** The README's section under `## title` (to the next `## `). */
function section(readme: string, title: string): string {
  const at = readme.indexOf(`\n## ${title}`);
  assert.notEqual(at, -1, `README has no '## ${title}'`);
  const end = readme.indexOf("\n## ", at + 4);
  return readme.slice(at + 1, end === -1 ? undefined : end);
}

Deno.test("the README is short: one screen of quick start, every command in one table row, the reference in docs/", async () => {
  const readme = await read("README.md");
  const lines = readme.split("\n").length;
  assert.ok(lines <= 250, `README.md has ${lines} lines (the reference belongs in docs/)`);
  assert.ok(section(readme, "Quick start").split("\n").length <= 40, "the quick start fits one screen");
  const table = section(readme, "Commands");
  const top = await yak(["--help"]);
  for (const name of commandsOf(top.stdout)) {
    assert.match(table, new RegExp(`^\\| \`yak ${name}[ \`]`, "m"), `yak ${name} has a row in the commands table`);
  }
  assert.ok(section(readme, "Guarantees").split("\n").length <= 25, "the guarantees are a short list");
  for (const doc of ["docs/CLI.md", "docs/GUIDE.md", "docs/KAFKA.md", "docs/ARCHITECTURE.md"]) {
    assert.ok(readme.includes(doc), `the README points to ${doc}`);
    await read(doc);
  }
});
