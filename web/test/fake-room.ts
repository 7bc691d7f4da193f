/**
 * A stand-in for livekit-client's Room (vi.mock in the lifecycle tests): it connects at once,
 * records what it was asked to send, and lets a test fire room events.
 */
type Handler = (...args: unknown[]) => void;

export const rooms: FakeRoom[] = [];

export class FakeRoom {
  readonly handlers = new Map<string, Handler[]>();
  readonly sentData: unknown[] = [];
  readonly sentText: { text: string; topic?: string }[] = [];
  readonly remoteParticipants = new Map<string, { identity: string; attributes: Record<string, string> }>();
  canPlaybackAudio = true;
  connected = false;
  disconnected = false;
  micError: Error | null = null;
  readonly localParticipant = {
    identity: "user",
    isMicrophoneEnabled: false,
    setMicrophoneEnabled: async (enabled: boolean): Promise<void> => {
      if (enabled && this.micError !== null) throw this.micError;
      this.localParticipant.isMicrophoneEnabled = enabled;
    },
    publishData: async (data: Uint8Array): Promise<void> => {
      this.sentData.push(JSON.parse(new TextDecoder().decode(data)));
    },
    sendText: async (text: string, options?: { topic?: string }): Promise<void> => {
      this.sentText.push({ text, topic: options?.topic });
    },
  };

  constructor() {
    rooms.push(this);
  }

  on(event: string, handler: Handler): this {
    this.handlers.set(event, [...(this.handlers.get(event) ?? []), handler]);
    return this;
  }

  emit(event: string, ...args: unknown[]): void {
    for (const handler of this.handlers.get(event) ?? []) handler(...args);
  }

  async connect(): Promise<void> {
    this.connected = true;
  }

  async disconnect(): Promise<void> {
    this.disconnected = true;
  }

  async startAudio(): Promise<void> {}
}

/** The module livekit-client is replaced with: the real enums, the fake Room. */
export async function fakeLivekit(
  importOriginal: () => Promise<typeof import("livekit-client")>,
): Promise<Record<string, unknown>> {
  const real = await importOriginal();
  return { ...real, Room: FakeRoom };
}

/** A createSession that resolves when the test says so, counting its calls. */
export function gatedCreate() {
  let count = 0;
  const pending: ((id: string) => void)[] = [];
  const create = async (): Promise<Record<string, string>> => {
    count += 1;
    const id = await new Promise<string>((resolve) => pending.push(resolve));
    return { session_id: id, livekit_url: "ws://lk", token: "t" };
  };
  return {
    create,
    calls: () => count,
    /** Answer the oldest waiting create with session `id`. */
    answer: (id: string) => pending.shift()?.(id),
  };
}

/** Let every queued promise and 0 ms timer run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}
