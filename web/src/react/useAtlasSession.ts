/**
 * useAtlasSession: the React SDK's hook, a thin layer over createAtlasClient. Options and the
 * returned object follow the Atlas API v8.0 "React SDK" section; `speak`, `avatarReady`,
 * `errorCode`, `retryAfterSeconds`, `audioBlocked` and `startAudio` are additions.
 */
import { useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore } from "react";
import type { RefObject } from "react";
import type { Room } from "livekit-client";

import { createAtlasClient, INITIAL_STATE, type AtlasClient } from "../core/client.js";
import type {
  AtlasState,
  AudioInput,
  AudioPlaybackHandle,
  CreateSession,
  DeleteSession,
  SessionStatus,
  TranscriptMessage,
} from "../core/types.js";

export interface UseAtlasSessionOptions {
  createSession: CreateSession;
  deleteSession?: DeleteSession;
  autoEnableMic?: boolean;
  autoCleanup?: boolean;
}

export interface AtlasSession {
  status: SessionStatus;
  error: string | null;
  sessionId: string | null;
  messages: TranscriptMessage[];
  muted: boolean;
  volume: number;
  latency: number;
  videoRef: RefObject<HTMLDivElement | null>;
  connect: (face?: Blob, faceUrl?: string) => Promise<void>;
  disconnect: () => Promise<void>;
  setMicEnabled: (enabled: boolean) => void;
  setVolume: (volume: number) => void;
  sendChat: (text: string) => void;
  room: Room | null;
  publishAudio: (audio: AudioInput) => Promise<AudioPlaybackHandle>;
  // additions
  speak: (text: string) => void;
  startAudio: () => Promise<void>;
  mode: string | null;
  avatarReady: boolean;
  audioBlocked: boolean;
  errorCode: string | null;
  retryAfterSeconds: number | null;
}


export function useAtlasSession(options: UseAtlasSessionOptions): AtlasSession {
  // the latest callbacks, read at call time: inline arrow functions need no memoising
  const latest = useRef(options);
  latest.current = options;
  const videoRef = useRef<HTMLDivElement | null>(null);
  // one client per component; options are getters so it always sees the latest props
  const [client] = useState<AtlasClient>(() =>
    createAtlasClient({
      createSession: (face, faceUrl) => latest.current.createSession(face, faceUrl),
      deleteSession: async (id) => await latest.current.deleteSession?.(id),
      get autoEnableMic() {
        return latest.current.autoEnableMic ?? true;
      },
      get autoCleanup() {
        return latest.current.autoCleanup ?? true;
      },
    }),
  );

  useEffect(
    () => () => {
      if (latest.current.autoCleanup ?? true) void client.destroy();
      else client.setVideoContainer(null);
    },
    [client],
  );

  // the ref is a plain RefObject: follow whatever element it points at after each render
  useEffect(() => {
    client.setVideoContainer(videoRef.current);
  });

  const subscribe = useCallback((cb: () => void) => client.subscribe(cb), [client]);
  const state = useSyncExternalStore(subscribe, () => client.getState(), () => INITIAL_STATE);

  const connect = useCallback(
    async (face?: Blob, faceUrl?: string) => {
      client.setVideoContainer(videoRef.current);
      await client.connect(face, faceUrl);
    },
    [client],
  );
  const publishAudio = useCallback(
    async (audio: AudioInput) => await client.publishAudio(audio),
    [client],
  );

  return useMemo(
    () => ({
      status: state.status,
      error: state.error,
      sessionId: state.sessionId,
      messages: state.messages,
      muted: state.muted,
      volume: state.volume,
      latency: state.latency,
      videoRef,
      connect,
      disconnect: async () => await client.disconnect(),
      setMicEnabled: (enabled: boolean) => client.setMicEnabled(enabled),
      setVolume: (volume: number) => client.setVolume(volume),
      sendChat: (text: string) => client.sendChat(text),
      room: state.room,
      publishAudio,
      speak: (text: string) => client.speak(text),
      startAudio: async () => await client.startAudio(),
      mode: state.mode,
      avatarReady: state.avatarReady,
      audioBlocked: state.audioBlocked,
      errorCode: state.errorCode,
      retryAfterSeconds: state.retryAfterSeconds,
    }),
    [state, client, connect, publishAudio],
  );
}
