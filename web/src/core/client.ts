/**
 * createAtlasClient: the framework-free core behind useAtlasSession. It owns one LiveKit Room per
 * session (adaptiveStream + dynacast), the avatar's video and voice on the page, transcriptions as
 * messages, latency sampling, mic and volume, chat and speak packets, publishAudio, and cleanup.
 */
import {
  Room,
  RoomEvent,
  type Participant,
  type RemoteParticipant,
  type RemoteTrack,
  type TranscriptionSegment,
} from "livekit-client";

import { AvatarMedia } from "./avatar-media.js";
import { playThroughRoom } from "./playback.js";
import { readSessionInfo, SessionCreateError } from "./session-info.js";
import { Store, type Listener } from "./store.js";
import { applySegment } from "./transcripts.js";
import type {
  AtlasClientOptions,
  AtlasState,
  AudioInput,
  AudioPlaybackHandle,
  TranscriptMessage,
} from "./types.js";

export const CHAT_TOPIC = "lk.chat";

export interface AtlasClient {
  getState(): AtlasState;
  subscribe(listener: Listener<AtlasState>): () => void;
  /** Where the avatar video (and its hidden voice element) is placed. */
  setVideoContainer(element: HTMLElement | null): void;
  /** The one <video> element the avatar plays in (kept across face swaps and sessions). */
  readonly videoElement: HTMLVideoElement;
  connect(face?: Blob, faceUrl?: string): Promise<void>;
  disconnect(): Promise<void>;
  setMicEnabled(enabled: boolean): void;
  setVolume(volume: number): void;
  sendChat(text: string): void;
  /** Make the avatar say `text` (the `speak` data packet; conversation mode). */
  speak(text: string): void;
  publishAudio(audio: AudioInput): Promise<AudioPlaybackHandle>;
  /** Resume the avatar's voice after the browser blocked autoplay (call from a user gesture). */
  startAudio(): Promise<void>;
  /** Disconnect and take the video off the page (the hook calls it on unmount); reusable. */
  destroy(): Promise<void>;
}

/** The state before any session; also the server render of the hook. */
export const INITIAL_STATE: AtlasState = {
  status: "idle",
  error: null,
  errorCode: null,
  retryAfterSeconds: null,
  sessionId: null,
  mode: null,
  messages: [],
  muted: true,
  volume: 100,
  latency: 0,
  avatarReady: false,
  audioBlocked: false,
  room: null,
};

export function createAtlasClient(options: AtlasClientOptions): AtlasClient {
  return new Client(options);
}

class Client implements AtlasClient {
  private readonly store = new Store<AtlasState>(INITIAL_STATE);
  private readonly media: AvatarMedia;
  private readonly opts: AtlasClientOptions;
  private room: Room | null = null;
  private generation = 0; // bumps on every connect/disconnect: stale async work checks it
  private latencyTimer: ReturnType<typeof setInterval> | null = null;
  private playback: AudioPlaybackHandle | null = null;
  private audioContext: AudioContext | null = null;
  private readonly onUnload = (): void => {
    void this.teardown("idle", true);
  };

  /** Options are read when used, so a caller may pass getters that follow its latest props. */
  constructor(options: AtlasClientOptions) {
    this.opts = options;
    this.media = new AvatarMedia(document);
  }

  get videoElement(): HTMLVideoElement {
    return this.media.video;
  }

  getState(): AtlasState {
    return this.store.get();
  }

  subscribe(listener: Listener<AtlasState>): () => void {
    return this.store.subscribe(listener);
  }

  setVideoContainer(element: HTMLElement | null): void {
    this.media.setContainer(element);
  }

  async connect(face?: Blob, faceUrl?: string): Promise<void> {
    if (this.room !== null) await this.teardown("idle", true);
    const generation = ++this.generation;
    this.store.set({
      ...INITIAL_STATE,
      volume: this.store.get().volume,
      status: "connecting",
    });
    let sessionId: string | null = null;
    try {
      const info = readSessionInfo(await this.opts.createSession(face, faceUrl));
      sessionId = info.sessionId;
      if (generation !== this.generation) throw new Superseded();
      this.store.set({ sessionId, mode: info.mode });
      const room = new Room({ adaptiveStream: true, dynacast: true });
      this.room = room;
      if (this.opts.autoCleanup ?? true) window.addEventListener("beforeunload", this.onUnload);
      this.wire(room, generation);
      await room.connect(info.livekitUrl, info.token);
      if (generation !== this.generation) throw new Superseded();
      this.store.set({ status: "connected", room, audioBlocked: !room.canPlaybackAudio });
      this.startLatency(generation);
      if (this.opts.autoEnableMic ?? true) {
        try {
          await room.localParticipant.setMicrophoneEnabled(true);
        } catch {
          // no microphone (or permission refused): the session still works, muted
        }
        this.store.set({ muted: !room.localParticipant.isMicrophoneEnabled });
      }
    } catch (err) {
      if (err instanceof Superseded || generation !== this.generation) return;
      await this.teardown("error", false, {
        error: err instanceof Error ? err.message : String(err),
        errorCode: err instanceof SessionCreateError ? err.code : null,
        retryAfterSeconds: err instanceof SessionCreateError ? err.retryAfterSeconds : null,
        sessionId: null,
      });
      if (sessionId !== null) void this.deleteQuietly(sessionId);
    }
  }

  async disconnect(): Promise<void> {
    await this.teardown("idle", true);
  }

  setMicEnabled(enabled: boolean): void {
    const room = this.room;
    if (room === null) return;
    void room.localParticipant
      .setMicrophoneEnabled(enabled)
      .catch(() => undefined)
      .then(() => this.store.set({ muted: !room.localParticipant.isMicrophoneEnabled }));
  }

  setVolume(volume: number): void {
    const v = Math.max(0, Math.min(100, Math.round(volume)));
    this.media.setVolume(v);
    this.store.set({ volume: v });
  }

  sendChat(text: string): void {
    const room = this.room;
    if (room === null || text.trim() === "") return;
    void room.localParticipant.sendText(text, { topic: CHAT_TOPIC }).catch(() => undefined);
    this.addMessage({
      id: `chat-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`,
      role: "user",
      text,
      final: true,
      timestamp: Date.now(),
    });
  }

  speak(text: string): void {
    const room = this.room;
    if (room === null || text.trim() === "") return;
    const packet = new TextEncoder().encode(JSON.stringify({ type: "speak", text }));
    void room.localParticipant.publishData(packet, { reliable: true }).catch(() => undefined);
  }

  async publishAudio(audio: AudioInput): Promise<AudioPlaybackHandle> {
    const room = this.room;
    if (room === null || this.store.get().status !== "connected") {
      throw new Error("publishAudio: not connected");
    }
    this.playback?.stop();
    await this.playback?.finished;
    this.audioContext ??= new AudioContext();
    const handle = await playThroughRoom(room, this.audioContext, audio, {
      subscribeTimeoutMs: this.opts.subscribeTimeoutMs ?? 5000,
      micChanged: (enabled) => this.store.set({ muted: !enabled }),
    });
    this.playback = handle;
    void handle.finished.then(() => {
      if (this.playback === handle) this.playback = null;
    });
    return handle;
  }

  async startAudio(): Promise<void> {
    await this.room?.startAudio();
    this.store.set({ audioBlocked: !(this.room?.canPlaybackAudio ?? true) });
  }

  async destroy(): Promise<void> {
    await this.teardown("idle", true);
    this.media.setContainer(null);
    await this.audioContext?.close().catch(() => undefined);
    this.audioContext = null;
  }

  // --- internals -------------------------------------------------------------------------------

  private wire(room: Room, generation: number): void {
    const live = (): boolean => generation === this.generation;
    room
      .on(RoomEvent.TrackSubscribed, (track: RemoteTrack, _pub, participant: RemoteParticipant) => {
        if (live() && this.media.trackSubscribed(track, participant)) {
          this.store.set({ avatarReady: true });
        }
      })
      .on(RoomEvent.TrackUnsubscribed, (track: RemoteTrack) => {
        if (live() && this.media.trackUnsubscribed(track)) this.store.set({ avatarReady: false });
      })
      .on(RoomEvent.TranscriptionReceived, (segments: TranscriptionSegment[], who?: Participant) => {
        if (!live()) return;
        const role = who !== undefined && who.identity === room.localParticipant.identity;
        for (const segment of segments) {
          this.store.set({
            messages: applySegment(this.store.get().messages, {
              id: segment.id,
              role: role ? "user" : "assistant",
              text: segment.text,
              final: segment.final,
              timestamp: segment.firstReceivedTime || Date.now(),
            }),
          });
        }
      })
      .on(RoomEvent.AudioPlaybackStatusChanged, () => {
        if (live()) this.store.set({ audioBlocked: !room.canPlaybackAudio });
      })
      .on(RoomEvent.Reconnecting, () => {
        if (live()) this.store.set({ status: "connecting" });
      })
      .on(RoomEvent.Reconnected, () => {
        if (live()) this.store.set({ status: "connected" });
      })
      .on(RoomEvent.Disconnected, () => {
        // the room went away without disconnect(): network lost for good, or the session ended
        if (live()) void this.teardown("disconnected", true);
      });
  }

  private startLatency(generation: number): void {
    const sample = async (): Promise<void> => {
      const track = this.media.currentVideoTrack;
      if (track === null || generation !== this.generation) return;
      const rtt = roundTripMs(await track.getRTCStatsReport().catch(() => undefined));
      if (rtt !== null && generation === this.generation) this.store.set({ latency: rtt });
    };
    this.latencyTimer = setInterval(() => void sample(), this.opts.latencyIntervalMs ?? 2000);
  }

  private addMessage(message: TranscriptMessage): void {
    this.store.set({ messages: [...this.store.get().messages, message] });
  }

  /** Leave the room and (optionally) delete the session; state ends as `status`. */
  private async teardown(
    status: "idle" | "disconnected" | "error",
    remove: boolean,
    patch: Partial<AtlasState> = {},
  ): Promise<void> {
    this.generation += 1;
    window.removeEventListener("beforeunload", this.onUnload);
    const room = this.room;
    const sessionId = this.store.get().sessionId;
    this.room = null;
    if (this.latencyTimer !== null) clearInterval(this.latencyTimer);
    this.latencyTimer = null;
    this.playback?.stop();
    this.playback = null;
    this.media.reset();
    this.store.set({ status, room: null, avatarReady: false, muted: true, latency: 0, ...patch });
    if (room !== null) await room.disconnect().catch(() => undefined);
    if (remove && sessionId !== null) await this.deleteQuietly(sessionId);
  }

  private async deleteQuietly(sessionId: string): Promise<void> {
    try {
      await this.opts.deleteSession?.(sessionId);
    } catch {
      // the session ends server-side anyway (empty room, reaper)
    }
  }
}

class Superseded extends Error {}

/** The current round-trip time (ms) of the selected ICE candidate pair, if the report has one. */
export function roundTripMs(report: RTCStatsReport | undefined): number | null {
  if (report === undefined) return null;
  let best: number | null = null;
  report.forEach((stat: { type?: string; state?: string; nominated?: boolean; currentRoundTripTime?: number }) => {
    if (stat.type !== "candidate-pair" || typeof stat.currentRoundTripTime !== "number") return;
    if (stat.state === "succeeded" || stat.nominated === true) {
      best = Math.round(stat.currentRoundTripTime * 1000);
    }
  });
  return best;
}
