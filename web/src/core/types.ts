/** Public types of the framework-free client (the React hook re-exports them). */
import type { Room } from "livekit-client";

export type SessionStatus = "idle" | "connecting" | "connected" | "disconnected" | "error";

export type MessageRole = "user" | "agent";

export interface TranscriptMessage {
  /** The transcription segment id (stable while a segment is refined, then final). */
  id: string;
  /** "user" for the person, "agent" for the avatar (upstream's names). */
  role: MessageRole;
  text: string;
  /** True once the segment is complete; interim segments are replaced in place. */
  final: boolean;
  /** Milliseconds since the epoch when the segment was first seen. */
  timestamp: number;
}

/**
 * What `createSession` resolves to: the API's own JSON (`session_id`, `livekit_url`, `token`),
 * the camelCase shape of the spec's React example (`sessionId`, `livekitUrl`, `token`), or an
 * API error body (`{error, message, retry_after_seconds?}`) passed through by a backend proxy.
 */
export interface SessionInfoLike {
  sessionId?: string;
  session_id?: string;
  livekitUrl?: string;
  livekit_url?: string;
  token?: string;
  mode?: string;
  error?: string;
  message?: string;
  retry_after_seconds?: number;
  [extra: string]: unknown;
}

export interface SessionInfo {
  sessionId: string;
  livekitUrl: string;
  token: string;
  mode: string | null;
}

export type CreateSession = (face?: Blob, faceUrl?: string) => Promise<SessionInfoLike>;
/**
 * Ends the session on your backend. `init.keepalive` is true when the page is going away
 * (pagehide): pass it to fetch so the request outlives the page.
 */
export type DeleteSession = (sessionId: string, init?: { keepalive: boolean }) => Promise<unknown>;

export interface AtlasClientOptions {
  /** Creates a session on your backend; the API key stays server-side. */
  createSession: CreateSession;
  /** Tears the session down on your backend (called by disconnect and on a lost room). */
  deleteSession?: DeleteSession;
  /** Turn the microphone on once connected (default true). */
  autoEnableMic?: boolean;
  /** Disconnect (and delete the session) on unmount and when the page goes away (default true). */
  autoCleanup?: boolean;
  /** How often round-trip latency is sampled, in ms (default 2000). */
  latencyIntervalMs?: number;
  /** How long publishAudio waits for the avatar to subscribe before playing (default 5000 ms). */
  subscribeTimeoutMs?: number;
}

export interface AtlasState {
  status: SessionStatus;
  error: string | null;
  /** The API's error code when a create failed (`no_capacity`, `rate_limited`, ...). */
  errorCode: string | null;
  /** `retry_after_seconds` of a 503/429 create, when the API gave one. */
  retryAfterSeconds: number | null;
  sessionId: string | null;
  mode: string | null;
  messages: TranscriptMessage[];
  muted: boolean;
  /** Playback volume of the avatar's voice, 0-100. */
  volume: number;
  /** Round-trip time to the media server in ms (0 until measured). */
  latency: number;
  /** True while the avatar's video track is subscribed. */
  avatarReady: boolean;
  /** True when the browser blocked autoplay of the avatar's voice (call startAudio on a tap). */
  audioBlocked: boolean;
  room: Room | null;
  /** The agent's state from LiveKit Agents ("listening", "thinking", "speaking"...), if it says. */
  agentState: string | null;
  /** Why the last session ended: "client", "pagehide", or LiveKit's reason ("room_deleted"...). */
  disconnectReason: string | null;
  /** Why the microphone could not be turned on (permission refused, no device), else null. */
  micError: string | null;
}

export interface AudioPlaybackHandle {
  /** Stop early: the track is unpublished and the microphone restored. */
  stop(): void;
  /** Resolves when playback has ended (naturally or by stop) and cleanup is done. */
  finished: Promise<void>;
}

export type AudioInput = string | Blob | ArrayBuffer;
