"use client";
export { useAtlasSession, type AtlasSession, type UseAtlasSessionOptions } from "./useAtlasSession.js";
export type {
  AudioInput,
  AudioPlaybackHandle,
  SessionStatus,
  TranscriptMessage,
  MessageRole,
  SessionInfoLike,
} from "../core/types.js";
