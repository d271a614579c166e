// Run from a folder where `npm install kafkajs@2.2.4` was done: node make_kafkajs_fixtures.cjs <testdata folder>
// Encodes Produce v3 requests with kafkajs 2.2.4 and keeps the records bytes of the one partition.
const fs = require("fs");
const Long = require("kafkajs/src/utils/long");
const { Types } = require("kafkajs/src/protocol/message/compression");
const request = require("kafkajs/src/protocol/requests/produce/v3/request");

const messages = [
  {
    key: Buffer.from("user-7"),
    value: Buffer.from("hello from kafkajs"),
    timestamp: 1763764800123,
    headers: { trace: Buffer.from("abc123"), "schema-ü": Buffer.from([0, 1, 2, 255]) },
  },
  { key: null, value: Buffer.from("second, no key"), timestamp: 1763764800125 },
  { key: Buffer.from("tombstone"), value: null, timestamp: 1763764800200 },
];

function recordsOf(buf) {
  let p = 0;
  const str = () => {
    const n = buf.readInt16BE(p);
    p += 2;
    if (n >= 0) p += n;
  };
  str(); // transactional id
  p += 2 + 4; // acks, timeout
  if (buf.readInt32BE(p) !== 1) throw new Error("one topic");
  p += 4;
  str();
  if (buf.readInt32BE(p) !== 1) throw new Error("one partition");
  p += 4;
  p += 4; // partition
  const n = buf.readInt32BE(p);
  p += 4;
  if (p + n !== buf.length) throw new Error("records end the request");
  return buf.subarray(p, p + n);
}

async function main() {
  for (
    const [name, compression] of [["kafkajs_produce_v3.bin", Types.None], ["kafkajs_produce_v3_gzip.bin", Types.GZIP]]
  ) {
    const req = request({
      acks: -1,
      timeout: 30000,
      producerId: Long.fromInt(4242),
      producerEpoch: 3,
      compression,
      topicData: [{ topic: "yak-test", partitions: [{ partition: 0, firstSequence: 17, messages }] }],
    });
    const enc = await req.encode();
    fs.writeFileSync(process.argv[2] + "/" + name, recordsOf(enc.buffer));
  }
}
main();
