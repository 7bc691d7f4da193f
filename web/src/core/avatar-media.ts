/**
 * The avatar's tracks on the page. The avatar is the participant that publishes the video; only
 * its voice is played (the agent worker publishes the face and the voice it lip-syncs from one
 * participant, so any other audio in the room is not the avatar speaking). One <video> element
 * lives for the client's lifetime: a face swap or a resubscription reuses it, never reloads it.
 */
import { Track, type RemoteTrack, type RemoteParticipant } from "livekit-client";

export class AvatarMedia {
  readonly video: HTMLVideoElement;
  private container: HTMLElement | null = null;
  private videoTrack: RemoteTrack | null = null;
  private avatarIdentity: string | null = null;
  private readonly audioTracks = new Map<string, { track: RemoteTrack; identity: string }>();
  private readonly audioElements = new Map<string, HTMLMediaElement>();
  private volume = 80; // the hook's default, as upstream

  constructor(doc: Document) {
    this.video = doc.createElement("video");
    this.video.autoplay = true;
    this.video.playsInline = true;
    this.video.muted = true; // the voice plays from its own element; muted video may autoplay
    this.video.setAttribute("data-atlas-avatar", "");
    // no inline object-fit: the page's CSS decides (the browser default, contain, shows all of it)
    Object.assign(this.video.style, { width: "100%", height: "100%" });
  }

  get currentVideoTrack(): RemoteTrack | null {
    return this.videoTrack;
  }

  setContainer(element: HTMLElement | null): void {
    if (this.container === element) return;
    this.video.remove();
    for (const el of this.audioElements.values()) el.remove();
    this.container = element;
    if (element === null) return;
    element.appendChild(this.video);
    for (const el of this.audioElements.values()) element.appendChild(el);
  }

  /** Returns true when the avatar's video became available. */
  trackSubscribed(track: RemoteTrack, participant: RemoteParticipant): boolean {
    if (track.kind === Track.Kind.Video) {
      this.videoTrack?.detach(this.video);
      this.videoTrack = track;
      this.avatarIdentity = participant.identity;
      track.attach(this.video);
      this.refreshAudio();
      return true;
    }
    if (track.kind === Track.Kind.Audio && track.sid) {
      this.audioTracks.set(track.sid, { track, identity: participant.identity });
      this.refreshAudio();
    }
    return false;
  }

  /** Returns true when the avatar's video went away. */
  trackUnsubscribed(track: RemoteTrack): boolean {
    if (track === this.videoTrack) {
      track.detach(this.video);
      this.videoTrack = null;
      this.avatarIdentity = null;
      this.refreshAudio();
      return true;
    }
    if (track.sid && this.audioTracks.delete(track.sid)) this.refreshAudio();
    return false;
  }

  setVolume(percent: number): void {
    this.volume = percent;
    for (const { track } of this.audioTracks.values()) applyVolume(track, percent);
  }

  /** Forget every track (the room is gone); the <video> element stays for the next session. */
  reset(): void {
    this.videoTrack?.detach(this.video);
    this.videoTrack = null;
    this.avatarIdentity = null;
    this.audioTracks.clear();
    this.refreshAudio();
  }

  /** Attach exactly the avatar participant's audio tracks; detach all others. */
  private refreshAudio(): void {
    for (const [sid, el] of this.audioElements) {
      const entry = this.audioTracks.get(sid);
      if (entry === undefined || entry.identity !== this.avatarIdentity) {
        entry?.track.detach(el);
        el.remove();
        this.audioElements.delete(sid);
      }
    }
    for (const [sid, { track, identity }] of this.audioTracks) {
      if (identity !== this.avatarIdentity || this.audioElements.has(sid)) continue;
      const el = track.attach();
      el.setAttribute("data-atlas-voice", "");
      el.style.display = "none";
      this.container?.appendChild(el);
      this.audioElements.set(sid, el);
      applyVolume(track, this.volume);
    }
  }
}

function applyVolume(track: RemoteTrack, percent: number): void {
  const setter = (track as { setVolume?: (v: number) => void }).setVolume;
  setter?.call(track, Math.max(0, Math.min(100, percent)) / 100);
}
