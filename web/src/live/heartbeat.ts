// Viewer heartbeats: ChatService.ReportViewing while the stream page is open on a live
// stream, at the interval each reply names (heartbeat_interval). Each reply's viewer
// count goes to `onCount`. Stops when the page goes away or the stream is no longer
// live (FAILED_PRECONDITION / NOT_FOUND); other failures (offline, a service hiccup)
// retry at the last interval the server named.
import { durationMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { apiClient } from "../api";
import { ChatService } from "../gen/reels/v1/chat_pb";
import { online, sleep } from "./wait";

/** Until the first reply says otherwise (svc_chat's default). */
const DEFAULT_INTERVAL_MS = 10_000;
const MIN_INTERVAL_MS = 1_000;

export async function sendHeartbeats(
  streamId: string,
  signal: AbortSignal,
  onCount: (viewers: bigint) => void,
): Promise<void> {
  const chat = apiClient(ChatService);
  let interval = DEFAULT_INTERVAL_MS;
  while (!signal.aborted) {
    await online(signal);
    if (signal.aborted) return;
    try {
      const reply = await chat.reportViewing({ streamId }, { signal, timeoutMs: 10_000 });
      onCount(reply.viewerCount);
      if (reply.heartbeatInterval) interval = Math.max(MIN_INTERVAL_MS, durationMs(reply.heartbeatInterval));
    } catch (err) {
      if (signal.aborted) return;
      const code = ConnectError.from(err).code;
      if (code === Code.FailedPrecondition || code === Code.NotFound || code === Code.Unauthenticated) return;
    }
    await sleep(interval, signal);
  }
}
