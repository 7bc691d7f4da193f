import { act } from "react";
import { createRoot } from "react-dom/client";
import { describe, expect, it, vi } from "vitest";

import { useAtlasSession, type AtlasSession } from "../src/react/index.js";

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

function mount(options: Parameters<typeof useAtlasSession>[0]) {
  const seen: AtlasSession[] = [];
  function Probe() {
    const session = useAtlasSession(options);
    seen.push(session);
    return <div ref={session.videoRef} data-testid="avatar" />;
  }
  const host = document.createElement("div");
  document.body.appendChild(host);
  const root = createRoot(host);
  act(() => root.render(<Probe />));
  return { seen, host, root, latest: () => seen[seen.length - 1]! };
}

describe("useAtlasSession", () => {
  it("returns the spec's fields with their documented initial values", () => {
    const { latest, root } = mount({ createSession: async () => ({}) });
    const s = latest();
    expect({
      status: s.status,
      error: s.error,
      sessionId: s.sessionId,
      messages: s.messages,
      muted: s.muted,
      volume: s.volume,
      latency: s.latency,
      room: s.room,
    }).toEqual({
      status: "idle",
      error: null,
      sessionId: null,
      messages: [],
      muted: true,
      volume: 80,
      latency: 0,
      room: null,
    });
    for (const fn of ["connect", "disconnect", "setMicEnabled", "setVolume", "sendChat", "publishAudio"]) {
      expect(typeof (s as unknown as Record<string, unknown>)[fn]).toBe("function");
    }
    act(() => root.unmount());
  });

  it("renders the avatar video inside the div videoRef points at", () => {
    const { host, root } = mount({ createSession: async () => ({}) });
    expect(host.querySelector("[data-testid=avatar] video[data-atlas-avatar]")).not.toBeNull();
    act(() => root.unmount());
  });

  it("uses the latest createSession and surfaces a backend error", async () => {
    const first = vi.fn(async () => ({}));
    const second = vi.fn(async () => ({ error: "rate_limited", message: "slow down", retry_after_seconds: 3 }));
    const { root } = mount({ createSession: first });
    // re-render with a new inline callback: the hook must call the newest one
    const seen: AtlasSession[] = [];
    function Probe2() {
      const s = useAtlasSession({ createSession: second });
      seen.push(s);
      return null;
    }
    act(() => root.render(<Probe2 />));
    await act(async () => {
      await seen[seen.length - 1]!.connect(new Blob(["f"]));
    });
    expect(first).not.toHaveBeenCalled();
    expect(second).toHaveBeenCalledTimes(1);
    const s = seen[seen.length - 1]!;
    expect([s.status, s.error, s.errorCode, s.retryAfterSeconds]).toEqual(["error", "slow down", "rate_limited", 3]);
    act(() => root.unmount());
  });

  it("setVolume updates the returned volume", () => {
    const { latest, root } = mount({ createSession: async () => ({}) });
    act(() => latest().setVolume(35));
    expect(latest().volume).toBe(35);
    act(() => root.unmount());
  });
});
