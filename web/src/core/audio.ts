/** publishAudio's input: a base64 string (optionally a data: URL), a Blob or an ArrayBuffer. */
import type { AudioInput } from "./types.js";

/** The bytes of a base64 string; a `data:<type>;base64,` prefix and whitespace are allowed. */
export function base64ToArrayBuffer(input: string): ArrayBuffer {
  const comma = input.startsWith("data:") ? input.indexOf(",") : -1;
  const body = (comma >= 0 ? input.slice(comma + 1) : input).replace(/\s+/g, "");
  // base64url too: some TTS APIs return it
  const standard = body.replace(/-/g, "+").replace(/_/g, "/");
  if (standard.length === 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(standard)) {
    throw new TypeError("publishAudio: the string is not base64 audio");
  }
  const binary = atob(standard.padEnd(Math.ceil(standard.length / 4) * 4, "="));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}

/** A private copy of the input's bytes (decodeAudioData detaches the buffer it is given). */
export async function audioBytes(input: AudioInput): Promise<ArrayBuffer> {
  if (typeof input === "string") return base64ToArrayBuffer(input);
  if (input instanceof ArrayBuffer) return input.slice(0);
  if (typeof Blob !== "undefined" && input instanceof Blob) return await blobBytes(input);
  throw new TypeError("publishAudio takes a base64 string, a Blob or an ArrayBuffer");
}

/** Blob.arrayBuffer, or FileReader where a Blob lacks it (older engines, test DOMs). */
function blobBytes(blob: Blob): Promise<ArrayBuffer> {
  if (typeof blob.arrayBuffer === "function") return blob.arrayBuffer();
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result as ArrayBuffer);
    reader.onerror = () => reject(reader.error ?? new Error("cannot read the Blob"));
    reader.readAsArrayBuffer(blob);
  });
}
