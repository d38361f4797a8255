// Live pages: /live lists the streams on air (and lets a signed-in user go live),
// /live/:id is one stream: player, chat, and the creator's tools (modules in ../live).
import "../live/live.css";
import { liveList } from "../live/list";
import { liveStream } from "../live/stream";
import type { Page } from "../router";

export const liveListPage: Page = (ctx) => liveList(ctx);
export const liveStreamPage: Page = (ctx) => liveStream(ctx);
