/**
 * createAtlasClient: the framework-free core behind useAtlasSession. It owns one LiveKit Room per
 * session (adaptiveStream + dynacast), the avatar's video and voice on the page, transcriptions as
 * messages, latency sampling, mic and volume, chat and speak packets, publishAudio, and cleanup.
 *
 * It behaves as @northmodellabs/atlas-react does (see web/README.md for the few differences):
 * a connect while connecting or connected is ignored, `disconnect()` ends in "disconnected",
 * `sendChat` makes the avatar say the text (a `speak` packet), agent turns have role "agent",
 * and `publishAudio` when not connected returns a handle that does nothing.
 *
 * Nothing touches `document` or `window` before the first connect or setVideoContainer, so the
 * client can be built while rendering on a server.
 */
import {
  DisconnectReason,
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
/** The participant attribute LiveKit Agents keeps the agent's state in. */
export const AGENT_STATE_ATTRIBUTE = "lk.agent.state";

const NOOP_PLAYBACK: AudioPlaybackHandle = { stop: () => undefined, finished: Promise.resolve() };

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
  /** Make the avatar say `text` as written (a `speak` packet), as upstream's sendChat does. */
  sendChat(text: string): void;
  /** The same as sendChat (the older name). */
  speak(text: string): void;
  /** Ask the agent's LLM (conversation mode): `text` on the `lk.chat` topic, as a user turn. */
  askAgent(text: string): void;
  /** Stop what the avatar is saying: what publishAudio plays, and a conversation agent's reply. */
  interrupt(): void;
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
  volume: 80,
  latency: 0,
  avatarReady: false,
  audioBlocked: false,
  room: null,
  agentState: null,
  disconnectReason: null,
  micError: null,
};

export function createAtlasClient(options: AtlasClientOptions): AtlasClient {
  return new Client(options);
}

class Client implements AtlasClient {
  private readonly store = new Store<AtlasState>(INITIAL_STATE);
  private mediaOnPage: AvatarMedia | null = null;
  private readonly opts: AtlasClientOptions;
  private room: Room | null = null;
  private generation = 0; // bumps on every connect/disconnect: stale async work checks it
  private latencyTimer: ReturnType<typeof setInterval> | null = null;
  private playback: AudioPlaybackHandle | null = null;
  private audioQueue: Promise<unknown> = Promise.resolve(); // publishAudio calls, one at a time
  private audioContext: AudioContext | null = null;
  // the page goes away (tab closed, navigated): end the session with a request that outlives it
  private readonly onPageHide = (): void => {
    void this.teardown("disconnected", true, { disconnectReason: "pagehide" }, true);
  };

  /** Options are read when used, so a caller may pass getters that follow its latest props. */
  constructor(options: AtlasClientOptions) {
    this.opts = options;
  }

  /** The avatar's elements, made on first use (never while rendering on a server). */
  private get media(): AvatarMedia {
    this.mediaOnPage ??= new AvatarMedia(document);
    return this.mediaOnPage;
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
    const { status, volume } = this.store.get();
    if (status === "connecting" || status === "connected") return; // as upstream: ignored
    // set synchronously: a second connect in the same tick (StrictMode's double effect) sees it
    this.store.set({ ...INITIAL_STATE, volume, status: "connecting" });
    const generation = ++this.generation;
    let sessionId: string | null = null;
    let handedOver = false; // once the store holds the id, teardown deletes the session
    try {
      const info = readSessionInfo(await this.opts.createSession(face, faceUrl));
      sessionId = info.sessionId;
      if (generation !== this.generation) throw new Superseded();
      this.store.set({ sessionId, mode: info.mode });
      handedOver = true;
      const room = new Room({ adaptiveStream: true, dynacast: true });
      this.room = room;
      if (this.opts.autoCleanup ?? true) window.addEventListener("pagehide", this.onPageHide);
      this.wire(room, generation);
      await room.connect(info.livekitUrl, info.token);
      if (generation !== this.generation) throw new Superseded();
      this.store.set({ status: "connected", room, audioBlocked: !room.canPlaybackAudio });
      this.readAgentState(room);
      this.startLatency(generation);
      if (this.opts.autoEnableMic ?? true) {
        const micError = await enableMic(room);
        if (generation === this.generation) {
          this.store.set({ muted: !room.localParticipant.isMicrophoneEnabled, micError });
        }
      }
    } catch (err) {
      if (err instanceof Superseded || generation !== this.generation) {
        // disconnected or unmounted while creating: the new session is nobody's, end it
        if (sessionId !== null && !handedOver) void this.deleteQuietly(sessionId);
        return;
      }
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
    await this.teardown("disconnected", true, { disconnectReason: "client" });
  }

  setMicEnabled(enabled: boolean): void {
    const room = this.room;
    if (room === null) return;
    void (enabled ? enableMic(room) : disableMic(room)).then((micError) =>
      this.store.set({ muted: !room.localParticipant.isMicrophoneEnabled, micError }),
    );
  }

  setVolume(volume: number): void {
    const v = Math.max(0, Math.min(100, Math.round(volume)));
    this.media.setVolume(v);
    this.store.set({ volume: v });
  }

  sendChat(text: string): void {
    this.speak(text);
  }

  askAgent(text: string): void {
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
    if (text.trim() === "") return;
    this.sendPacket({ type: "speak", text });
  }

  interrupt(): void {
    this.playback?.stop();
    this.sendPacket({ type: "interrupt" }); // a conversation agent stops its reply
  }

  private sendPacket(message: Record<string, string>): void {
    const room = this.room;
    if (room === null) return;
    const packet = new TextEncoder().encode(JSON.stringify(message));
    void room.localParticipant.publishData(packet, { reliable: true }).catch(() => undefined);
  }

  publishAudio(audio: AudioInput): Promise<AudioPlaybackHandle> {
    if (this.room === null || this.store.get().status !== "connected") {
      return Promise.resolve(NOOP_PLAYBACK); // as upstream: nothing to play into
    }
    // one call at a time: a new one replaces what plays (and its mic restore) before it starts
    const next = this.audioQueue.then(() => this.playNow(audio));
    this.audioQueue = next.catch(() => undefined);
    return next;
  }

  private async playNow(audio: AudioInput): Promise<AudioPlaybackHandle> {
    this.playback?.stop();
    await this.playback?.finished;
    const room = this.room;
    if (room === null || this.store.get().status !== "connected") return NOOP_PLAYBACK;
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
    await this.teardown("disconnected", true, { disconnectReason: "client" });
    this.mediaOnPage?.setContainer(null);
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
              role: role ? "user" : "agent",
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
      .on(RoomEvent.ParticipantAttributesChanged, () => {
        if (live()) this.readAgentState(room);
      })
      .on(RoomEvent.ParticipantDisconnected, () => {
        if (live()) this.readAgentState(room);
      })
      .on(RoomEvent.Disconnected, (reason?: DisconnectReason) => {
        // the room went away without disconnect(): network lost for good, or the session ended
        const disconnectReason = reason === undefined ? "unknown" : reasonName(reason);
        if (live()) void this.teardown("disconnected", true, { disconnectReason });
      });
  }

  private readAgentState(room: Room): void {
    let agentState: string | null = null;
    for (const participant of room.remoteParticipants.values()) {
      agentState = participant.attributes[AGENT_STATE_ATTRIBUTE] ?? agentState;
    }
    if (agentState !== this.store.get().agentState) this.store.set({ agentState });
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
    status: "connecting" | "disconnected" | "error",
    remove: boolean,
    patch: Partial<AtlasState> = {},
    keepalive = false,
  ): Promise<void> {
    this.generation += 1;
    if (typeof window !== "undefined") window.removeEventListener("pagehide", this.onPageHide);
    const room = this.room;
    const sessionId = this.store.get().sessionId;
    this.room = null;
    if (this.latencyTimer !== null) clearInterval(this.latencyTimer);
    this.latencyTimer = null;
    this.playback?.stop();
    this.playback = null;
    this.mediaOnPage?.reset();
    this.store.set({
      status,
      room: null,
      avatarReady: false,
      muted: true,
      latency: 0,
      agentState: null,
      ...(remove ? { sessionId: null } : {}),
      ...patch,
    });
    if (room !== null) await room.disconnect().catch(() => undefined);
    if (remove && sessionId !== null) await this.deleteQuietly(sessionId, keepalive);
  }

  private async deleteQuietly(sessionId: string, keepalive = false): Promise<void> {
    try {
      await this.opts.deleteSession?.(sessionId, { keepalive });
    } catch {
      // the session ends server-side anyway (empty room, reaper)
    }
  }
}

class Superseded extends Error {}

/** Turn the microphone on; the browser's refusal as text (null when it is on). */
async function enableMic(room: Room): Promise<string | null> {
  try {
    await room.localParticipant.setMicrophoneEnabled(true);
    return null;
  } catch (err) {
    // no microphone, or permission refused: the session still works, muted, and says why
    const { message, name } = (err ?? {}) as { message?: string; name?: string };
    return message || name || String(err); // a DOMException (NotAllowedError) is not always an Error
  }
}

async function disableMic(room: Room): Promise<string | null> {
  await room.localParticipant.setMicrophoneEnabled(false).catch(() => undefined);
  return null;
}

function reasonName(reason: DisconnectReason): string {
  return (DisconnectReason[reason] ?? String(reason)).toLowerCase();
}

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
