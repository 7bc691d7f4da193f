"use client";
/**
 * useAtlasSession: the React SDK's hook, a thin layer over createAtlasClient. Options and the
 * returned object follow the Atlas API v8.0 "React SDK" section and behave as
 * @northmodellabs/atlas-react does; the other fields are additions (web/README.md lists them).
 *
 * Safe to render on a server (no `document`/`window` until an effect or a call) and under
 * StrictMode: its simulated unmount does not end a session, so connect-on-mount creates one.
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
  connect: (face?: Blob | null, faceUrl?: string | null) => Promise<void>;
  disconnect: () => Promise<void>;
  setMicEnabled: (enabled: boolean) => void;
  setVolume: (volume: number) => void;
  sendChat: (text: string) => void;
  room: Room | null;
  publishAudio: (audio: AudioInput) => Promise<AudioPlaybackHandle>;
  // additions
  speak: (text: string) => void;
  askAgent: (text: string) => void;
  interrupt: () => void;
  startAudio: () => Promise<void>;
  agentState: string | null;
  isSpeaking: boolean;
  disconnectReason: string | null;
  micError: string | null;
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
      deleteSession: async (id, init) => await latest.current.deleteSession?.(id, init),
      get autoEnableMic() {
        return latest.current.autoEnableMic ?? true;
      },
      get autoCleanup() {
        return latest.current.autoCleanup ?? true;
      },
    }),
  );

  // Unmount ends the session one task later: StrictMode's simulated unmount is followed at once
  // by a remount, which cancels it, so its connect-on-mount keeps the one session it created.
  const pendingDestroy = useRef<ReturnType<typeof setTimeout> | null>(null);
  useEffect(() => {
    if (pendingDestroy.current !== null) clearTimeout(pendingDestroy.current);
    pendingDestroy.current = null;
    return () => {
      if (latest.current.autoCleanup ?? true) {
        pendingDestroy.current = setTimeout(() => {
          pendingDestroy.current = null;
          void client.destroy();
        }, 0);
      } else {
        client.setVideoContainer(null);
      }
    };
  }, [client]);

  // the ref is a plain RefObject: follow whatever element it points at after each render
  useEffect(() => {
    client.setVideoContainer(videoRef.current);
  });

  const subscribe = useCallback((cb: () => void) => client.subscribe(cb), [client]);
  const state = useSyncExternalStore(subscribe, () => client.getState(), () => INITIAL_STATE);

  const connect = useCallback(
    async (face?: Blob | null, faceUrl?: string | null) => {
      client.setVideoContainer(videoRef.current);
      await client.connect(face ?? undefined, faceUrl ?? undefined);
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
      askAgent: (text: string) => client.askAgent(text),
      interrupt: () => client.interrupt(),
      startAudio: async () => await client.startAudio(),
      agentState: state.agentState,
      isSpeaking: state.agentState === "speaking",
      disconnectReason: state.disconnectReason,
      micError: state.micError,
      mode: state.mode,
      avatarReady: state.avatarReady,
      audioBlocked: state.audioBlocked,
      errorCode: state.errorCode,
      retryAfterSeconds: state.retryAfterSeconds,
    }),
    [state, client, connect, publishAudio],
  );
}
