import { describe, expect, it, vi } from "vitest";

import {
  applySegment,
  audioBytes,
  base64ToArrayBuffer,
  createAtlasClient,
  readSessionInfo,
  roundTripMs,
  SessionCreateError,
} from "../src/core/index.js";
import { Store } from "../src/core/store.js";

const bytesOf = (b: ArrayBuffer): number[] => Array.from(new Uint8Array(b));

describe("readSessionInfo", () => {
  it("reads the API's snake_case and the React example's camelCase", () => {
    const api = { session_id: "ses_1", livekit_url: "ws://lk", token: "t", mode: "passthrough" };
    expect(readSessionInfo(api)).toEqual({
      sessionId: "ses_1",
      livekitUrl: "ws://lk",
      token: "t",
      mode: "passthrough",
    });
    expect(readSessionInfo({ sessionId: "ses_2", livekitUrl: "ws://x", token: "u" }).sessionId).toBe(
      "ses_2",
    );
  });

  it("turns a passed-through API error into a typed error with its retry hint", () => {
    const body = { error: "no_capacity", message: "All GPU pods are busy.", retry_after_seconds: 30 };
    const err = (() => {
      try {
        readSessionInfo(body);
      } catch (e) {
        return e;
      }
    })() as SessionCreateError;
    expect(err).toBeInstanceOf(SessionCreateError);
    expect([err.code, err.retryAfterSeconds, err.message]).toEqual([
      "no_capacity",
      30,
      "All GPU pods are busy.",
    ]);
  });

  it("refuses a response without a token", () => {
    expect(() => readSessionInfo({ session_id: "ses_1", livekit_url: "ws://lk" })).toThrow(/token/);
  });
});

describe("publishAudio inputs", () => {
  it("decodes base64, data URLs, base64url and wrapped lines", () => {
    expect(bytesOf(base64ToArrayBuffer("AAEC/w=="))).toEqual([0, 1, 2, 255]);
    expect(bytesOf(base64ToArrayBuffer("data:audio/wav;base64,AAEC/w=="))).toEqual([0, 1, 2, 255]);
    expect(bytesOf(base64ToArrayBuffer("AAEC_w"))).toEqual([0, 1, 2, 255]);
    expect(bytesOf(base64ToArrayBuffer("AA\nEC\n/w=="))).toEqual([0, 1, 2, 255]);
  });

  it("refuses what is not base64", () => {
    expect(() => base64ToArrayBuffer("not base64!")).toThrow(TypeError);
    expect(() => base64ToArrayBuffer("")).toThrow(TypeError);
  });

  it("copies ArrayBuffers (decodeAudioData detaches its input) and reads Blobs", async () => {
    const source = new Uint8Array([9, 8, 7]).buffer;
    const copy = await audioBytes(source);
    expect(copy).not.toBe(source);
    expect(bytesOf(copy)).toEqual([9, 8, 7]);
    expect(bytesOf(await audioBytes(new Blob([new Uint8Array([1, 2])])))).toEqual([1, 2]);
    await expect(audioBytes(42 as unknown as string)).rejects.toThrow(TypeError);
  });
});

describe("transcripts", () => {
  const seg = (id: string, text: string, final: boolean) => ({
    id,
    role: "agent" as const,
    text,
    final,
    timestamp: 1,
  });

  it("refines an interim segment in place and keeps the order", () => {
    let list = applySegment([], seg("a", "Hel", false));
    list = applySegment(list, seg("b", "Hi", true));
    list = applySegment(list, seg("a", "Hello there", true));
    expect(list.map((m) => [m.id, m.text, m.final])).toEqual([
      ["a", "Hello there", true],
      ["b", "Hi", true],
    ]);
  });

  it("never turns a final segment back into an interim one", () => {
    const list = applySegment(applySegment([], seg("a", "Done.", true)), seg("a", "Do", false));
    expect(list[0]).toMatchObject({ text: "Done.", final: true });
  });

  it("skips empty interim segments", () => {
    expect(applySegment([], seg("a", "  ", false))).toEqual([]);
  });
});

describe("Store", () => {
  it("notifies only when a value changes", () => {
    const store = new Store({ a: 1, b: "x" });
    const seen = vi.fn();
    store.subscribe(seen);
    store.set({ a: 1 });
    store.set({ a: 2 });
    expect(seen).toHaveBeenCalledTimes(1);
    expect(store.get()).toEqual({ a: 2, b: "x" });
  });
});

describe("roundTripMs", () => {
  it("reads the selected candidate pair's current RTT", () => {
    const report = new Map<string, object>([
      ["x", { type: "candidate-pair", state: "failed", currentRoundTripTime: 9 }],
      ["y", { type: "candidate-pair", state: "succeeded", nominated: true, currentRoundTripTime: 0.0423 }],
      ["z", { type: "inbound-rtp" }],
    ]) as unknown as RTCStatsReport;
    expect(roundTripMs(report)).toBe(42);
    expect(roundTripMs(undefined)).toBeNull();
  });
});

describe("createAtlasClient", () => {
  it("reports a 503 no_capacity create as an error with retry_after_seconds", async () => {
    const deleteSession = vi.fn();
    const client = createAtlasClient({
      createSession: async () => ({ error: "no_capacity", message: "busy", retry_after_seconds: 7 }),
      deleteSession,
    });
    const statuses: string[] = [];
    client.subscribe((s) => statuses.push(s.status));
    await client.connect(new Blob(["face"]));
    expect(statuses).toEqual(["connecting", "error"]);
    expect(client.getState()).toMatchObject({
      status: "error",
      error: "busy",
      errorCode: "no_capacity",
      retryAfterSeconds: 7,
      sessionId: null,
      room: null,
    });
    expect(deleteSession).not.toHaveBeenCalled();
  });

  it("passes face and faceUrl to createSession and reports a thrown error", async () => {
    const createSession = vi.fn(async () => {
      throw new Error("backend down");
    });
    const client = createAtlasClient({ createSession });
    const face = new Blob(["x"]);
    await client.connect(face, "https://example.com/f.jpg");
    expect(createSession).toHaveBeenCalledWith(face, "https://example.com/f.jpg");
    expect(client.getState()).toMatchObject({ status: "error", error: "backend down", errorCode: null });
  });

  it("puts one persistent <video> in the container it is given", () => {
    const client = createAtlasClient({ createSession: async () => ({}) });
    const first = document.createElement("div");
    const second = document.createElement("div");
    client.setVideoContainer(first);
    expect(first.querySelector("video")).toBe(client.videoElement);
    client.setVideoContainer(second);
    expect(first.querySelector("video")).toBeNull();
    expect(second.querySelector("video")).toBe(client.videoElement);
    expect(client.videoElement.muted && client.videoElement.autoplay).toBe(true);
  });

  it("clamps volume to 0-100 and publishAudio before connecting does nothing", async () => {
    const client = createAtlasClient({ createSession: async () => ({}) });
    client.setVolume(140);
    expect(client.getState().volume).toBe(100);
    client.setVolume(-3);
    expect(client.getState().volume).toBe(0);
    const handle = await client.publishAudio("AAAA");
    expect(() => handle.stop()).not.toThrow();
  });
});
