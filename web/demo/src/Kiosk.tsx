/**
 * Kiosk mode (/demo?kiosk=1&face=grace&mode=conversation): full screen, a mute toggle and nothing
 * else. It starts by itself, comes back by itself after a network drop or a worker restart, and
 * shows a calm idle screen while the server has no capacity, retrying when it says to.
 */
import { useEffect, useRef, useState } from "react";

import { useAtlasSession } from "../../src/react/index.js";
import { createSession, deleteSession, type Mode } from "./api.js";
import { faceByName } from "./faces.js";

const AVATAR_WAIT_S = 15; // no avatar video this long after joining (or since it left): start over
const RETRY_S = 5; // after an error without retry_after_seconds

export function Kiosk({ faceName, mode }: { faceName: string; mode: Mode }) {
  const session = useAtlasSession({
    createSession: async (face, faceUrl) => await createSession(mode, face, faceUrl),
    deleteSession: async (id) => void (await deleteSession(id)),
  });
  const [retryAt, setRetryAt] = useState<number | null>(null);
  const [now, setNow] = useState(Date.now());
  const [failedStarts, setFailedStarts] = useState(0);
  const [starts, setStarts] = useState(0); // shown on the page, for tests and operators
  const attempt = useRef(0); // the same count, synchronously (StrictMode runs effects twice)
  const handledFailures = useRef(0); // failed starts already given a retry

  const start = async (): Promise<void> => {
    attempt.current += 1;
    setStarts(attempt.current);
    setRetryAt(null);
    try {
      const face = faceByName(faceName);
      if (face) await session.connect(await face.load());
      else await session.connect(undefined, faceName);
    } catch {
      // the server went away before a session could even start (the face fetch failed, say):
      // the session's status need not change, so count the failure to schedule the next try
      setFailedStarts((n) => n + 1);
    }
  };

  // start at once, and again whenever the session is lost or failed, or a start did not get far
  useEffect(() => {
    if (session.status === "idle" && attempt.current === 0) {
      void start();
      return undefined;
    }
    const lost = session.status === "disconnected" || session.status === "error";
    const freshFailure = failedStarts > handledFailures.current;
    if (!lost && !freshFailure) return undefined;
    const wait = freshFailure ? RETRY_S : (session.retryAfterSeconds ?? RETRY_S);
    handledFailures.current = failedStarts;
    setRetryAt(Date.now() + wait * 1000);
    const timer = setTimeout(() => void start(), wait * 1000);
    return () => clearTimeout(timer);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [session.status, failedStarts]);

  // joined but the avatar never came (worker down) or went away (worker restarted): start over
  useEffect(() => {
    if (session.status !== "connected" || session.avatarReady) return;
    const timer = setTimeout(() => void session.disconnect().then(() => start()), AVATAR_WAIT_S * 1000);
    return () => clearTimeout(timer);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [session.status, session.avatarReady]);

  useEffect(() => {
    if (retryAt === null) return;
    const tick = setInterval(() => setNow(Date.now()), 250);
    return () => clearInterval(tick);
  }, [retryAt]);

  const idle = !session.avatarReady;
  const busy = session.errorCode === "no_capacity";
  const seconds = retryAt === null ? null : Math.max(0, Math.ceil((retryAt - now) / 1000));
  return (
    <div
      className="kiosk"
      data-state={session.avatarReady ? "live" : busy ? "busy" : "waiting"}
      data-starts={starts}
    >
      <div className="kiosk-video" ref={session.videoRef} data-testid="avatar" />
      {idle && (
        <div className="kiosk-idle" data-testid="idle" role="status">
          <div className="orb" />
          <h1>{busy ? "All our assistants are busy" : "Hello!"}</h1>
          <p>
            {busy
              ? "Someone will be with you in a moment."
              : session.status === "error" || session.status === "disconnected"
                ? "Reconnecting…"
                : "Getting ready…"}
          </p>
          {seconds !== null && <p className="small" data-testid="retry-in">Trying again in {seconds} s</p>}
        </div>
      )}
      {session.audioBlocked && session.avatarReady && (
        <button className="kiosk-sound" onClick={() => void session.startAudio()}>Tap for sound</button>
      )}
      <button
        className={`kiosk-mute ${session.muted ? "off" : ""}`}
        onClick={() => session.setMicEnabled(session.muted)}
        data-testid="mute"
        aria-label={session.muted ? "Unmute" : "Mute"}
      >
        {session.muted ? "Unmute" : "Mute"}
      </button>
    </div>
  );
}
