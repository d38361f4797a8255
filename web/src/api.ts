// Typed API clients over gRPC-web, through Envoy on the page's own origin (Envoy's
// grpc_web filter turns each call into gRPC for the service). The clients come from the
// service descriptors generated from proto/ into ./gen (make gen): no hand-written
// request or response shapes.
//
//   import { FeedService } from "./gen/reels/v1/rank_pb";
//   const feed = apiClient(FeedService);
//   const page = await feed.getFeed({ limit: 20 }, { signal });
import type { DescService } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createClient,
  type Client,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { getToken, tokenRefused } from "./auth";

/** Adds `authorization: Bearer <token>` when signed in; a call the API refuses as
 * UNAUTHENTICATED (expired or foreign token) signs out with a notice saying why
 * (auth.ts tokenRefused), so the sign-in page asks again and explains. Streaming calls
 * too: their refusal may come with the first message read rather than the headers. */
const bearer: Interceptor = (next) => async (req) => {
  const token = getToken();
  if (token !== null) req.header.set("authorization", `Bearer ${token}`);
  try {
    const res = await next(req);
    if (!res.stream || token === null) return res;
    return { ...res, message: watchRefusal(res.message, token) };
  } catch (err) {
    if (token !== null) refusedBy(err, token);
    throw err;
  }
};

async function* watchRefusal<T>(messages: AsyncIterable<T>, token: string): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (err) {
    refusedBy(err, token);
    throw err;
  }
}

function refusedBy(err: unknown, token: string): void {
  if (err instanceof DOMException && err.name === "AbortError") return;
  const ce = ConnectError.from(err);
  // Envoy's JWT check answers 401 (UNAUTHENTICATED) for a bad or expired token, but 403
  // (PERMISSION_DENIED) for a token of another audience: a refused token all the same.
  if (ce.code === Code.Unauthenticated || (ce.code === Code.PermissionDenied && /^Audiences in Jwt/i.test(ce.rawMessage))) {
    tokenRefused(token);
  }
}

/** Whether trying the same call again may work: the service was unavailable or too
 * slow, or the network failed (no answer at all). Refusals (permission denied, not
 * found, invalid argument, signed out...) come back the same however often they are
 * asked, so a page offers "Try again" only when this is true. */
export function isRetryable(err: unknown): boolean {
  if (err instanceof DOMException && err.name === "AbortError") return false;
  const ce = ConnectError.from(err);
  if (ce.code === Code.Unavailable || ce.code === Code.DeadlineExceeded) return true;
  // fetch() itself failed (offline, connection refused or reset): a TypeError.
  return ce.code === Code.Unknown && (ce.cause instanceof TypeError || err instanceof TypeError);
}

export const transport: Transport = createGrpcWebTransport({
  baseUrl: window.location.origin,
  useBinaryFormat: true,
  interceptors: [bearer],
});

/** A typed client of `service` (a descriptor from ./gen) over the app's transport. */
export function apiClient<T extends DescService>(service: T): Client<T> {
  return createClient(service, transport);
}

/** A one-line, human explanation of a failed call, for the page (never a stack). */
export function describeError(err: unknown): string {
  if (err instanceof DOMException && err.name === "AbortError") return "cancelled";
  const ce = ConnectError.from(err);
  if (ce.code === Code.Unauthenticated) return "Not signed in, or the token was refused (expired?).";
  if (ce.code === Code.Unavailable) return `The service is unavailable: ${ce.rawMessage || "try again"}.`;
  return `${Code[ce.code]}: ${ce.rawMessage}`;
}
