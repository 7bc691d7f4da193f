/**
 * The hook's session lifecycle and upstream (@northmodellabs/atlas-react) semantics, against a
 * fake Room: no session may outlive the component that created it, and ported apps keep working.
 */
import { act, StrictMode, useEffect } from "react";
import { createRoot, type Root } from "react-dom/client";
import { afterEach, describe, expect, it, vi } from "vitest";

import { FakeRoom, gatedCreate, rooms, settle } from "./fake-room.js";

vi.mock("livekit-client", async (importOriginal) => {
  const { fakeLivekit } = await import("./fake-room.js");
  return await fakeLivekit(importOriginal as () => Promise<typeof import("livekit-client")>);
});

// a playback that lasts until stopped, recording the order things happen in
const played: string[] = [];
vi.mock("../src/core/playback.js", () => ({
  PUBLISHED_AUDIO_TRACK_NAME: "atlas-publish-audio",
  playThroughRoom: async (_room: unknown, _ctx: unknown, input: unknown) => {
    played.push(`start ${String(input)}`);
    let stop: () => void = () => undefined;
    const finished = new Promise<void>((resolve) => {
      let stopped = false;
      stop = () => {
        if (!stopped) played.push(`stop ${String(input)}`);
        stopped = true;
        resolve();
      };
    });
    return { stop, finished };
  },
}));
(globalThis as { AudioContext?: unknown }).AudioContext ??= class {
  close = async (): Promise<void> => undefined;
};

import { useAtlasSession, type AtlasSession } from "../src/react/index.js";

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

type Options = Parameters<typeof useAtlasSession>[0];

let root: Root | null = null;
afterEach(() => {
  rooms.length = 0;
  played.length = 0;
  if (root) act(() => root?.unmount());
  root = null;
});

function render(options: Options, { strict = false, connectOnMount = false } = {}) {
  const seen: AtlasSession[] = [];
  function Probe() {
    const session = useAtlasSession(options);
    seen.push(session);
    useEffect(() => {
      if (connectOnMount) void session.connect(new Blob(["face"]));
      // eslint-disable-next-line react-hooks/exhaustive-deps
    }, []);
    return <div ref={session.videoRef} />;
  }
  const host = document.createElement("div");
  document.body.appendChild(host);
  root = createRoot(host);
  act(() => root!.render(strict ? <StrictMode><Probe /></StrictMode> : <Probe />));
  return { latest: () => seen[seen.length - 1]! };
}

async function connected(options: Partial<Options> = {}) {
  const gate = gatedCreate();
  const deleteSession = vi.fn(async () => undefined);
  const view = render({ createSession: gate.create, deleteSession, ...options });
  const connecting = view.latest().connect(new Blob(["face"]));
  gate.answer("ses_1");
  await act(async () => {
    await connecting;
  });
  expect(view.latest().status).toBe("connected");
  return { ...view, gate, deleteSession, room: rooms[rooms.length - 1]! };
}

describe("the session ends with the component", () => {
  it("unmount calls deleteSession", async () => {
    const { deleteSession, room } = await connected();
    act(() => root!.unmount());
    root = null;
    await settle();
    expect(deleteSession).toHaveBeenCalledTimes(1);
    expect(deleteSession).toHaveBeenCalledWith("ses_1", { keepalive: false });
    expect(room.disconnected).toBe(true);
  });

  it("unmount leaves the session alone with autoCleanup: false", async () => {
    const { deleteSession, room } = await connected({ autoCleanup: false });
    act(() => root!.unmount());
    root = null;
    await settle();
    expect(deleteSession).not.toHaveBeenCalled();
    expect(room.disconnected).toBe(false);
  });

  it("StrictMode's double mount creates one session, and a real unmount deletes it", async () => {
    const gate = gatedCreate();
    const deleteSession = vi.fn(async () => undefined);
    const { latest } = render(
      { createSession: gate.create, deleteSession },
      { strict: true, connectOnMount: true },
    );
    await settle();
    expect(gate.calls()).toBe(1);
    gate.answer("ses_1");
    await act(async () => settle());
    expect(latest().status).toBe("connected");
    expect(deleteSession).not.toHaveBeenCalled();
    act(() => root!.unmount());
    root = null;
    await settle();
    expect(deleteSession.mock.calls).toEqual([["ses_1", { keepalive: false }]]);
  });

  it("a second connect while connecting is ignored", async () => {
    const gate = gatedCreate();
    const { latest } = render({ createSession: gate.create });
    const first = latest().connect(new Blob(["a"]));
    const second = latest().connect(new Blob(["b"]));
    await second;
    expect(gate.calls()).toBe(1);
    gate.answer("ses_1");
    await act(async () => {
      await first;
    });
    expect(latest().status).toBe("connected");
    expect(rooms).toHaveLength(1);
    await latest().connect(); // connected: ignored too
    expect(gate.calls()).toBe(1);
  });

  it("a disconnect or unmount during create deletes the session it makes", async () => {
    const gate = gatedCreate();
    const deleteSession = vi.fn(async () => undefined);
    const { latest } = render({ createSession: gate.create, deleteSession });
    const connecting = latest().connect(new Blob(["a"]));
    await act(async () => latest().disconnect());
    gate.answer("ses_1");
    await act(async () => {
      await connecting;
    });
    expect(deleteSession).toHaveBeenCalledWith("ses_1", { keepalive: false });
    expect(rooms).toHaveLength(0);
    expect(latest().status).toBe("disconnected");

    // unmounted before the create answers
    const again = latest().connect(new Blob(["b"]));
    act(() => root!.unmount());
    root = null;
    await settle();
    gate.answer("ses_2");
    await again;
    await settle();
    expect(deleteSession).toHaveBeenCalledWith("ses_2", { keepalive: false });
    expect(rooms).toHaveLength(0);
  });

  it("pagehide deletes the session with keepalive", async () => {
    const { deleteSession, latest } = await connected();
    await act(async () => {
      window.dispatchEvent(new Event("pagehide"));
      await settle();
    });
    expect(deleteSession).toHaveBeenCalledWith("ses_1", { keepalive: true });
    expect([latest().status, latest().disconnectReason]).toEqual(["disconnected", "pagehide"]);
  });
});

describe("upstream semantics", () => {
  it("sendChat makes the avatar say the text; askAgent asks the LLM", async () => {
    const { latest, room } = await connected();
    latest().sendChat("Say this.");
    latest().askAgent("What time is it?");
    await settle();
    expect(room.sentData).toEqual([{ type: "speak", text: "Say this." }]);
    expect(room.sentText).toEqual([{ text: "What time is it?", topic: "lk.chat" }]);
  });

  it("interrupt tells a conversation agent to stop its reply", async () => {
    const { latest, room } = await connected();
    latest().interrupt();
    await settle();
    expect(room.sentData).toEqual([{ type: "interrupt" }]);
  });

  it("agent turns have role agent; disconnect ends in disconnected and deletes", async () => {
    const { latest, room, deleteSession } = await connected();
    room.remoteParticipants.set("agent", { identity: "agent", attributes: {} });
    await act(async () => {
      room.emit("transcriptionReceived", [{ id: "s1", text: "Hello.", final: true }], {
        identity: "agent",
      });
      room.emit("transcriptionReceived", [{ id: "s2", text: "Hi.", final: true }], {
        identity: "user",
      });
    });
    expect(latest().messages.map((m) => [m.role, m.text])).toEqual([
      ["agent", "Hello."],
      ["user", "Hi."],
    ]);
    await act(async () => latest().disconnect());
    expect([latest().status, latest().sessionId, latest().disconnectReason]).toEqual([
      "disconnected",
      null,
      "client",
    ]);
    expect(deleteSession).toHaveBeenCalledTimes(1);
  });

  it("publishAudio when not connected returns a handle that does nothing", async () => {
    const { latest } = render({ createSession: async () => ({}) });
    const handle = await latest().publishAudio("AAAA");
    expect(() => handle.stop()).not.toThrow();
    expect(played).toEqual([]);
  });

  it("publishAudio calls run one at a time: the next replaces the last once it is over", async () => {
    const { latest } = await connected();
    const [one, two] = await Promise.all([
      latest().publishAudio("one"),
      latest().publishAudio("two"),
    ]);
    expect(played).toEqual(["start one", "stop one", "start two"]);
    two.stop();
    one.stop(); // already stopped: nothing more
    expect(played).toEqual(["start one", "stop one", "start two", "stop two"]);
  });

  it("says why the microphone is off, and what the agent is doing", async () => {
    const gate = gatedCreate();
    const { latest } = render({ createSession: gate.create });
    const connecting = latest().connect();
    const room = rooms[0] as FakeRoom | undefined;
    expect(room).toBeUndefined(); // the room is made after the create answers
    gate.answer("ses_1");
    // the fake room refuses the mic as a browser does when permission is denied
    const proto = FakeRoom.prototype as unknown as { connect: () => Promise<void> };
    const connect = proto.connect;
    proto.connect = async function (this: FakeRoom) {
      this.micError = new DOMException("Permission denied", "NotAllowedError");
      this.connected = true;
    };
    await act(async () => {
      await connecting;
    });
    proto.connect = connect;
    expect([latest().status, latest().muted, latest().micError]).toEqual([
      "connected",
      true,
      "Permission denied",
    ]);
    const live = rooms[0]!;
    live.remoteParticipants.set("agent", {
      identity: "agent",
      attributes: { "lk.agent.state": "speaking" },
    });
    await act(async () => live.emit("participantAttributesChanged", {}, {}));
    expect([latest().agentState, latest().isSpeaking]).toEqual(["speaking", true]);
  });
});
