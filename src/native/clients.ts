/**
 * Native `register` and `deregister`: the producers and consumers a broker
 * shows in `status`, one per connection.
 *
 * @module
 */
import type { BrokerServices } from "../broker/services.ts";
import { YakError } from "../errors.ts";
import { type Reply, type Request, str } from "../protocol/messages.ts";
import type { Session } from "../protocol/server.ts";
import { checkClientId, checkGroupName, checkTopicName } from "./names.ts";

/** `register`: the connection's client (producer or consumer), forgotten when it closes. */
export function register(s: BrokerServices, req: Request, session: Session): Reply {
  const role = str(req, "role", 16);
  if (role !== "producer" && role !== "consumer") {
    throw new YakError("INVALID_REQUEST", "'role' must be producer or consumer");
  }
  const client = checkClientId(str(req, "client", 64), "client");
  const topic = checkTopicName(req.topic);
  const group = req.group === undefined || req.group === null ? undefined : checkGroupName(req.group);
  const fresh = s.clients.register(session.id, {
    role,
    client,
    topic,
    group,
    remote: session.remote,
    since: Date.now(),
  });
  if (fresh) session.onClose(() => s.clients.deregister(session.id, "connection closed"));
  // What this broker takes beyond the first protocol: `produce_lines`, a produce's values as attached lines.
  return { registered: true, features: ["produce_lines"] };
}

/** `deregister`: forgets the connection's client now. */
export function deregister(s: BrokerServices, _req: Request, session: Session): Reply {
  return { deregistered: s.clients.deregister(session.id) !== undefined };
}
