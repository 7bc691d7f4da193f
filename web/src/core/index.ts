export { createAtlasClient, roundTripMs, CHAT_TOPIC, type AtlasClient } from "./client.js";
export { PUBLISHED_AUDIO_TRACK_NAME } from "./playback.js";
export { readSessionInfo, SessionCreateError } from "./session-info.js";
export { base64ToArrayBuffer, audioBytes } from "./audio.js";
export { applySegment } from "./transcripts.js";
export type * from "./types.js";
