// Creator analytics: /analytics is the signed-in creator's overview, /analytics/:id
// one of their videos (modules in ../analytics). The section's data-state (loading,
// ready, empty, error) says where it is, for people and tests.
import "../analytics/analytics.css";
import { creatorOverview } from "../analytics/overview";
import { videoAnalytics } from "../analytics/video";
import type { PageContext } from "../router";

export async function analyticsPage(ctx: PageContext): Promise<void> {
  if (ctx.params.id) await videoAnalytics(ctx);
  else await creatorOverview(ctx);
}
