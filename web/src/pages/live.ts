// Live pages (to be written; see issue 12): the list of live streams and one stream.
import { placeholderPage } from "./placeholder";

export const liveListPage = placeholderPage("Live");
export const liveStreamPage = placeholderPage("Live stream");
