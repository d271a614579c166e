import assert from "node:assert/strict";
import { join } from "node:path";
import {
  dataModes,
  ensureDataDir,
  fileModes,
  refuseForeignOwner,
  refuseSymlink,
  useFileModes,
  writeFileAtomic,
} from "./files.ts";
import { YakError } from "./errors.ts";
import { OpLog } from "./op_log.ts";

const modeOf = (path: string) => Deno.statSync(path).mode! & 0o777;

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

Deno.test("data modes: directories 0700 and files 0600, or 0750 and 0640 shared; ensureDataDir sets an old one", async () => {
  if (Deno.build.os === "windows") return;
  const dir = await Deno.makeTempDir();
  try {
    assert.deepEqual(dataModes(), { dir: 0o700, file: 0o600 });
    const fresh = join(dir, "a", "broker-1");
    await ensureDataDir(fresh);
    // A umask takes bits away from a mode asked for at creation (not from a chmod).
    const mask = Deno.umask();
    assert.equal(modeOf(join(dir, "a")), 0o700 & ~mask, "a parent it created");
    assert.equal(modeOf(fresh), 0o700);
    await writeFileAtomic(join(fresh, "broker.pid"), "1\n");
    assert.equal(modeOf(join(fresh, "broker.pid")), 0o600 & ~mask);
    const old = join(dir, "old");
    await Deno.mkdir(old, { mode: 0o755 });
    await Deno.chmod(old, 0o755);
    useFileModes(fileModes(true));
    try {
      await ensureDataDir(old);
      assert.equal(modeOf(old), 0o750);
      await writeFileAtomic(join(old, "topic.json"), "{}\n");
      assert.equal(modeOf(join(old, "topic.json")), 0o640 & ~mask);
    } finally {
      useFileModes(fileModes(false));
    }
    await ensureDataDir(old);
    assert.equal(modeOf(old), 0o700);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "refuseForeignOwner: a directory of another uid is refused; ours, or a missing one, passes",
  // Giving a directory away takes root.
  ignore: Deno.uid() !== 0,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      refuseForeignOwner(dir, "the data root");
      refuseForeignOwner(join(dir, "missing"), "the data root");
      await Deno.chown(dir, 65534, 65534);
      assert.throws(() => refuseForeignOwner(dir, "the data root"), (err: unknown) => {
        assert.ok(err instanceof YakError);
        assert.equal(err.code, "STORAGE");
        assert.match(
          err.message,
          new RegExp(`^the data root ${dir} belongs to uid 65534, not to this process's uid 0`),
        );
        return true;
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
