/**
 * Native `replicate` and `epoch_end`, the leader's side of replication: the
 * contract (what is checked, how a reply is framed) is
 * src/broker/replica_protocol.ts; the answers are `Replication`'s.
 *
 * @module
 */
import {
  decodeEpochEndQuery,
  decodeFetchRequest,
  encodeEpochEnds,
  encodeFetchReply,
} from "../broker/replica_protocol.ts";
import type { BrokerServices } from "../broker/services.ts";
import type { Reply, Request } from "../protocol/messages.ts";

/** `replicate`: a follower's long poll for what follows its log ends. */
export async function replicate(s: BrokerServices, req: Request): Promise<Reply> {
  return encodeFetchReply(await s.replication.serveFetch(decodeFetchRequest(req, s.opts)));
}

/** `epoch_end`: where the leader's epochs end, for a follower's truncation. */
export function epochEnd(s: BrokerServices, req: Request): Reply {
  const { epoch, lastEpochs } = decodeEpochEndQuery(req, s.opts);
  return encodeEpochEnds(s.replication.epochEnds(epoch, lastEpochs));
}
