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
import { getToken, signOut } from "./auth";

/** Adds `authorization: Bearer <token>` when signed in; a call the API refuses as
 * UNAUTHENTICATED (expired or foreign token) signs out, so the app asks again. */
const bearer: Interceptor = (next) => async (req) => {
  const token = getToken();
  if (token !== null) req.header.set("authorization", `Bearer ${token}`);
  try {
    return await next(req);
  } catch (err) {
    if (token !== null && getToken() === token && ConnectError.from(err).code === Code.Unauthenticated) {
      signOut();
    }
    throw err;
  }
};

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
