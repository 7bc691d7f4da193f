/** The page's calls to the same-origin broker in `atlas serve` (no API key here, ever). */
import type { SessionInfoLike } from "../../src/core/types.js";

export interface DemoInfo {
  broker: boolean;
  realtime: boolean;
  speech: boolean;
  missing: string[];
}

export interface Ended {
  duration_seconds: number;
  estimated_cost: string;
}

export type Mode = "conversation" | "passthrough";

export async function demoInfo(): Promise<DemoInfo> {
  const res = await fetch("/api/demo");
  if (!res.ok) return { broker: false, realtime: false, speech: false, missing: [] };
  return (await res.json()) as DemoInfo;
}

/** POST /api/session with the face as a file (or a face_url) and the mode, like the spec. */
export async function createSession(
  mode: Mode,
  face?: Blob,
  faceUrl?: string,
): Promise<SessionInfoLike> {
  const form = new FormData();
  if (face) form.append("face", face, "face.jpg");
  else if (faceUrl) form.append("face_url", faceUrl);
  form.append("mode", mode);
  try {
    const res = await fetch("/api/session", { method: "POST", body: form });
    return (await res.json()) as SessionInfoLike;
  } catch {
    return { error: "network_error", message: "The server cannot be reached." };
  }
}

/** POST /api/speech: `text` spoken by the server's text-to-speech, as a WAV (or the error). */
export async function speech(text: string): Promise<Blob | { message: string }> {
  const res = await fetch("/api/speech", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ text }),
  });
  if (res.ok) return await res.blob();
  const body = (await res.json().catch(() => ({}))) as { message?: string };
  return { message: body.message ?? `Text to speech failed (${res.status})` };
}

/** DELETE /api/session/{id}; keepalive lets it finish while the page unloads. */
export async function deleteSession(id: string): Promise<Ended | null> {
  const res = await fetch(`/api/session/${encodeURIComponent(id)}`, {
    method: "DELETE",
    keepalive: true,
  });
  return res.ok ? ((await res.json()) as Ended) : null;
}

export async function swapFace(id: string, face: Blob): Promise<string | null> {
  const form = new FormData();
  form.append("face", face, "face.jpg");
  const res = await fetch(`/api/session/${encodeURIComponent(id)}`, { method: "PATCH", body: form });
  if (res.ok) return null;
  const body = (await res.json().catch(() => ({}))) as { message?: string };
  return body.message ?? `Face swap failed (${res.status})`;
}

export interface Job {
  job_id: string;
  status: "pending" | "processing" | "completed" | "failed";
  queue_position: number;
  progress: number;
  error: string | null;
  url?: string;
}

export async function submitJob(audio: Blob, image: Blob): Promise<Job | { message: string }> {
  const form = new FormData();
  form.append("audio", audio, audio instanceof File ? audio.name : "audio.wav");
  form.append("image", image, image instanceof File ? image.name : "face.jpg");
  const res = await fetch("/api/generate", { method: "POST", body: form });
  const body = (await res.json()) as Job & { message?: string };
  return res.status === 202 ? body : { message: body.message ?? `Upload failed (${res.status})` };
}

export async function pollJob(id: string): Promise<Job> {
  const res = await fetch(`/api/jobs/${encodeURIComponent(id)}`);
  return (await res.json()) as Job;
}
