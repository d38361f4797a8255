// Video titles for the analytics pages. Analytics answer video ids only; the title is
// UploadService.GetVideo's, asked for best-effort: a video it does not know (published
// by another path, or deleted since) keeps its id as its name.
import { apiClient } from "../api";
import { UploadService } from "../gen/reels/v1/upload_pb";

const known = new Map<string, string | null>();

/** Titles of `ids` ("" → unknown), in parallel; never throws. */
export async function videoTitles(ids: readonly string[], signal: AbortSignal): Promise<Map<string, string>> {
  const upload = apiClient(UploadService);
  const out = new Map<string, string>();
  await Promise.all(
    ids.map(async (id) => {
      if (!known.has(id)) {
        try {
          const reply = await upload.getVideo({ videoId: id }, { signal, timeoutMs: 5_000 });
          known.set(id, reply.video?.title || null);
        } catch {
          if (signal.aborted) return;
          known.set(id, null);
        }
      }
      const title = known.get(id);
      if (title) out.set(id, title);
    }),
  );
  return out;
}
