import assert from "node:assert/strict";
import { join } from "node:path";
import { refuseSymlink, writeFileAtomic } from "./files.ts";
import { YakError } from "./errors.ts";
import { OpLog } from "./op_log.ts";

Deno.test("writeFileAtomic replaces a link at the path and leaves its target alone", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const victim = join(dir, "victim");
    await Deno.writeTextFile(victim, "precious\n");
    const path = join(dir, "broker.pid");
    await Deno.symlink(victim, path);
    await writeFileAtomic(path, "123\n");
    assert.equal(await Deno.readTextFile(victim), "precious\n");
    assert.ok((await Deno.lstat(path)).isFile);
    assert.equal(await Deno.readTextFile(path), "123\n");
    // Again over the regular file, synced, with bytes: no temp file is left beside it.
    await writeFileAtomic(path, new TextEncoder().encode("456\n"), { sync: true });
    assert.equal(await Deno.readTextFile(path), "456\n");
    assert.deepEqual((await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort(), ["broker.pid", "victim"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("refuseSymlink: a link is refused with STORAGE naming it; a file or nothing passes; OpLog refuses one", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const victim = join(dir, "victim");
    await Deno.writeTextFile(victim, "precious\n");
    const link = join(dir, "broker.log");
    await Deno.symlink(victim, link);
    assert.throws(() => refuseSymlink(link, "operation log"), (err: unknown) => {
      assert.ok(err instanceof YakError);
      assert.equal(err.code, "STORAGE");
      assert.match(err.message, new RegExp(`^${link} is a symbolic link to ${victim}; .*remove the link`));
      return true;
    });
    assert.throws(() => new OpLog(link, "broker-1", false), /is a symbolic link/);
    assert.equal(await Deno.readTextFile(victim), "precious\n");
    refuseSymlink(victim, "operation log");
    refuseSymlink(join(dir, "missing"), "operation log");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
