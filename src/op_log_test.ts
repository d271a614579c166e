import assert from "node:assert/strict";
import { join } from "node:path";
import { OpLog } from "./op_log.ts";

/** Whether this process may mount a small tmpfs (root on Linux). */
function canMount(): boolean {
  try {
    const probe = Deno.makeTempDirSync({ prefix: "yak-mount-probe-" });
    const ok =
      new Deno.Command("mount", { args: ["-t", "tmpfs", "-o", "size=1m", "tmpfs", probe] }).outputSync().success;
    if (ok) new Deno.Command("umount", { args: [probe] }).outputSync();
    Deno.removeSync(probe);
    return ok;
  } catch {
    return false;
  }
}

Deno.test({
  name: "an entry that only partly fits on a full disk leaves no torn line behind",
  ignore: Deno.build.os !== "linux" || !canMount(),
  fn: async () => {
    const mnt = await Deno.makeTempDir({ prefix: "yak-oplog-full-" });
    const mounted = await new Deno.Command("mount", { args: ["-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt] }).output();
    try {
      assert.ok(mounted.success);
      const path = join(mnt, "broker.log");
      const log = new OpLog(path, "broker-1", false);
      try {
        // The first entry ends 100 bytes before the end of the file's first page.
        log.write("started", {
          pad: "x".repeat(4096 - 100 - '{"ts":"2026-01-01T00:00:00.000Z","event":"started","pad":""}\n'.length),
        });
        assert.equal((await Deno.stat(path)).size, 4096 - 100);
        // Ballast takes every page left: the next entry fits only up to the end of the first.
        const ballast = await Deno.open(join(mnt, "ballast"), { write: true, create: true });
        try {
          while (true) await ballast.write(new Uint8Array(4096));
        } catch {
          /* full */
        } finally {
          ballast.close();
        }
        log.write("write_failed", { error: "y".repeat(300) });
        assert.equal((await Deno.stat(path)).size, 4096 - 100, "the part that fit is cut again");
        await Deno.remove(join(mnt, "ballast"));
        log.write("writes_resumed");
      } finally {
        log.close();
      }
      const events = (await Deno.readTextFile(path)).trimEnd().split("\n").map((l) => JSON.parse(l).event);
      assert.deepEqual(events, ["started", "writes_resumed"]);
    } finally {
      await new Deno.Command("umount", { args: [mnt] }).output();
      await Deno.remove(mnt, { recursive: true });
    }
  },
});
