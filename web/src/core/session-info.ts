/** Reading what a backend's createSession returned: a session, or an API error passed through. */
import type { SessionInfo, SessionInfoLike } from "./types.js";

export class SessionCreateError extends Error {
  readonly code: string | null;
  readonly retryAfterSeconds: number | null;

  constructor(message: string, code: string | null, retryAfterSeconds: number | null) {
    super(message);
    this.name = "SessionCreateError";
    this.code = code;
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

function text(value: unknown): string | null {
  return typeof value === "string" && value.length > 0 ? value : null;
}

/** The session in either naming, or a SessionCreateError carrying the API's error code. */
export function readSessionInfo(raw: SessionInfoLike | null | undefined): SessionInfo {
  if (raw == null || typeof raw !== "object") {
    throw new SessionCreateError("createSession returned nothing", null, null);
  }
  const code = text(raw.error);
  if (code !== null) {
    const retry = typeof raw.retry_after_seconds === "number" ? raw.retry_after_seconds : null;
    throw new SessionCreateError(text(raw.message) ?? code, code, retry);
  }
  const sessionId = text(raw.sessionId) ?? text(raw.session_id);
  const livekitUrl = text(raw.livekitUrl) ?? text(raw.livekit_url);
  const token = text(raw.token);
  if (sessionId === null || livekitUrl === null || token === null) {
    throw new SessionCreateError(
      "createSession must return session_id (or sessionId), livekit_url (or livekitUrl) and token",
      null,
      null,
    );
  }
  return { sessionId, livekitUrl, token, mode: text(raw.mode) };
}
