// Watch events of one view of one reel: watch_start, 25/50/75 % and complete.
//
// A *view session* (svc_stream's unit for views, docs/DECISIONS.md "Counting views")
// starts each time a reel becomes the current one: a new session id, so coming back to
// a reel later is another view. Within it the reel loops: reaching the end sends
// watch_complete, and the next pass starts with another watch_start, which svc_stream
// counts as a replay (a play, not a view). Stalls and pauses send nothing; a stall does
// not restart the session.
//
// watch_seconds is media time actually played since the previous event of the session
// (timeupdate deltas; a seek is not watching). Time watched after the last milestone of
// a view (leaving at 60 %, say) has no event to ride on and is not reported: the event
// vocabulary has no "stop" type.
import { EventType, type EventReporter } from "./events";

const MILESTONES: readonly (readonly [number, EventType])[] = [
  [0.25, EventType.PROGRESS_25],
  [0.5, EventType.PROGRESS_50],
  [0.75, EventType.PROGRESS_75],
];
// A timeupdate step longer than this is a seek (or a hidden tab), not watching.
const MAX_STEP_S = 1.5;

export class WatchTracker {
  readonly sessionId = crypto.randomUUID();
  private started = false;
  private reached = 0; // milestones sent in the current pass
  private watched = 0; // seconds watched since the previous event
  private last = 0; // the playhead at the previous timeupdate

  constructor(
    private readonly reporter: EventReporter,
    private readonly videoId: string,
    /** The reel's duration as the feed knows it (the catalog's), for when the media
     * element does not know it yet. */
    private readonly knownDuration: number,
    private readonly rendition: () => string,
  ) {}

  /** The video is playing (the `playing` event): the first time, watch_start. */
  playing(video: HTMLVideoElement): void {
    this.last = video.currentTime;
    if (this.started) return;
    this.started = true;
    this.reached = 0;
    this.send(EventType.WATCH_START, video.currentTime);
  }

  /** The playhead moved (`timeupdate`). */
  timeUpdate(video: HTMLVideoElement): void {
    const now = video.currentTime;
    const step = now - this.last;
    this.last = now;
    if (!this.started || video.paused || video.seeking) return;
    if (step > 0 && step <= MAX_STEP_S * Math.max(1, video.playbackRate)) this.watched += step;
    const duration = this.duration(video);
    if (duration <= 0) return;
    while (this.reached < MILESTONES.length) {
      const [share, type] = MILESTONES[this.reached]!;
      if (now < share * duration) break;
      this.reached += 1;
      this.send(type, now);
    }
  }

  /** The pass reached the end (`ended`): watch_complete; the next `playing` (the reel
   * starts over) is a replay. */
  ended(video: HTMLVideoElement): void {
    if (!this.started) return;
    const duration = this.duration(video);
    // The last timeupdate comes up to 250 ms before the end.
    this.watched += Math.max(0, Math.min(MAX_STEP_S, video.currentTime - this.last));
    this.last = 0;
    // Milestones a very short reel skipped between two timeupdates still go first.
    while (this.reached < MILESTONES.length) {
      const [, type] = MILESTONES[this.reached]!;
      this.reached += 1;
      this.send(type, duration > 0 ? duration * MILESTONES[this.reached - 1]![0] : video.currentTime);
    }
    this.send(EventType.WATCH_COMPLETE, duration > 0 ? duration : video.currentTime);
    this.started = false; // the next `playing` is a replay's watch_start
  }

  private duration(video: HTMLVideoElement): number {
    const media = video.duration;
    return Number.isFinite(media) && media > 0 ? media : this.knownDuration;
  }

  private send(type: EventType, position: number): void {
    const watched = this.watched;
    this.watched = 0;
    this.reporter.record({
      videoId: this.videoId,
      type,
      sessionId: this.sessionId,
      positionSeconds: position,
      watchSeconds: type === EventType.WATCH_START ? 0 : watched,
      rendition: this.rendition(),
    });
  }
}
