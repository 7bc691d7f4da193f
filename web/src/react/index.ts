export { useAtlasSession, type AtlasSession, type UseAtlasSessionOptions } from "./useAtlasSession.js";
export type {
  AudioInput,
  AudioPlaybackHandle,
  SessionStatus,
  TranscriptMessage,
  SessionInfoLike,
} from "../core/types.js";
