import assert from "node:assert/strict";
import { FrameReader, withAttachment } from "./frame.ts";

const encoder = new TextEncoder();

/** A byte stream handed out in pieces of the given sizes (then whatever is left), as a socket may. */
function streamOf(bytes: Uint8Array, pieces: number[]) {
  let at = 0;
  let reads = 0;
  return {
    reads: () => reads,
    read(p: Uint8Array): Promise<number | null> {
      if (at >= bytes.length) return Promise.resolve(null);
      const n = Math.min(p.length, bytes.length - at, pieces[reads] ?? Infinity);
      reads++;
      p.set(bytes.subarray(at, at + n));
      at += n;
      return Promise.resolve(n);
    },
  };
}

Deno.test("FrameReader: a large attachment read straight into it, in any pieces, and the frames around it intact", async () => {
  const big = new Uint8Array(1 << 20).map((_, i) => i % 251);
  const stream = new Uint8Array([
    ...encoder.encode('{"id":1}\n'),
    ...encoder.encode(withAttachment('{"id":2}', big.length) + "\n"),
    ...big,
    ...encoder.encode(withAttachment('{"id":3}', 3) + "\nabc"),
    ...encoder.encode('{"id":4}\n'),
  ]);
  for (const pieces of [[], [5, 20, 100_000, 7], [30, 1, 1, 1, 300_000, 400_000]]) {
    const source = streamOf(stream, pieces);
    const reader = new FrameReader(source, 1 << 20, 2 << 20, 64 * 1024);
    const got: { line: string; bytes?: number[] }[] = [];
    let attachment: Uint8Array | undefined;
    for (let frames = await reader.nextFrames(); frames; frames = await reader.nextFrames()) {
      for (const f of frames) {
        if (f.attachment && f.attachment.length === big.length) attachment = f.attachment;
        got.push({ line: f.line, bytes: f.attachment && f.attachment.length < 10 ? [...f.attachment] : undefined });
      }
    }
    assert.deepEqual(got.map((f) => JSON.parse(f.line).id), [1, 2, 3, 4], `pieces ${pieces}`);
    assert.deepEqual(got[2].bytes, [...encoder.encode("abc")]);
    assert.deepEqual(attachment, big, `pieces ${pieces}`);
    // Read into the attachment directly: far fewer reads than 64 KiB pieces of 1 MiB would take.
    if (pieces.length === 0) assert.ok(source.reads() <= 6, `${source.reads()} reads`);
  }
});
