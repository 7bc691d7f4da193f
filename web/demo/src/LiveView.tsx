/** The live demo: choose a face and a mode, then talk to (or play audio through) the avatar. */
import { useEffect, useRef, useState } from "react";

import { useAtlasSession } from "../../src/react/index.js";
import type { AudioPlaybackHandle } from "../../src/core/types.js";
import speechUrl from "../../../tests/fixtures/speech.wav?url";
import {
  createSession,
  deleteSession,
  demoInfo,
  speech,
  swapFace,
  type Ended,
  type Mode,
} from "./api.js";
import { Dialog } from "./Dialog.js";
import { FacePicker } from "./FacePicker.js";
import type { FaceChoice } from "./faces.js";
import { MicIcon, SpeakerIcon, SwapIcon } from "./icons.js";
import { Transcript } from "./Transcript.js";

export function LiveView({ realtime }: { realtime: boolean }) {
  const [face, setFace] = useState<FaceChoice | null>(null);
  const [mode, setMode] = useState<Mode>("conversation");
  const [ended, setEnded] = useState<Ended | null>(null);
  const modeRef = useRef(mode);
  modeRef.current = mode;

  const session = useAtlasSession({
    createSession: (faceBlob, faceUrl) => createSession(modeRef.current, faceBlob, faceUrl),
    deleteSession: async (id) => {
      const result = await deleteSession(id);
      if (result) setEnded(result);
    },
  });
  const [starting, setStarting] = useState(false);
  const live = session.status === "connected" || session.status === "connecting";
  // the session went away without the End button: say so (the room closed, the network went)
  const dropped =
    session.status === "disconnected" && session.disconnectReason !== "client"
      ? (session.disconnectReason ?? "unknown")
      : null;

  const start = async (): Promise<void> => {
    if (!face || starting) return;
    setStarting(true); // loading the photo takes a moment: a second click must not start twice
    setEnded(null);
    try {
      await session.connect(await face.load());
    } finally {
      setStarting(false);
    }
  };

  return (
    <div className={`live ${live ? "in-session" : ""}`}>
      <section className="stage-wrap">
        <div className="stage" data-testid="stage">
          <div className="video" ref={session.videoRef} data-testid="avatar" />
          {!live && (
            <div className="stage-cover">
              {face?.preview ? <img src={face.preview} alt="" /> : <div className="glow" />}
            </div>
          )}
          {live && !session.avatarReady && (
            <div className="stage-veil"><div className="spinner" /> Waking the avatar…</div>
          )}
          {live && (
            <div className="pill" data-testid="status-pill" role="status">
              <span className={`dot ${session.status}`} />
              {session.status === "connected" ? "Live" : "Connecting"}
              {session.latency > 0 && <span className="muted"> · {session.latency} ms</span>}
              <span className="muted"> · {session.mode}</span>
            </div>
          )}
          {session.audioBlocked && (
            <button className="pill action" onClick={() => void session.startAudio()}>
              <SpeakerIcon /> Tap for sound
            </button>
          )}
        </div>
        {live && (
          <Controls
            session={session}
            onEnd={() => void session.disconnect()}
          />
        )}
      </section>

      <aside className="panel">
        {!live ? (
          <StartPanel
            face={face}
            setFace={setFace}
            mode={mode}
            setMode={setMode}
            start={start}
            realtime={realtime}
            ended={ended}
            error={session.status === "error" ? session.error : null}
            dropped={dropped}
            starting={starting || session.status === "connecting"}
          />
        ) : (
          <SessionPanel session={session} />
        )}
      </aside>
    </div>
  );
}

type Session = ReturnType<typeof useAtlasSession>;

function Controls({ session, onEnd }: { session: Session; onEnd: () => void }) {
  const [swapping, setSwapping] = useState(false);
  const [swapError, setSwapError] = useState<string | null>(null);
  return (
    <div className="controls">
      <button
        className={`round ${session.muted ? "off" : ""}`}
        onClick={() => session.setMicEnabled(session.muted)}
        data-testid="mute"
        title={session.muted ? "Unmute" : "Mute"}
      >
        <MicIcon off={session.muted} />
        <span>{session.muted ? "Unmute" : "Mute"}</span>
      </button>
      <label className="volume" title="Volume">
        <SpeakerIcon />
        <input
          aria-label="Volume"
          type="range"
          min={0}
          max={100}
          value={session.volume}
          onChange={(e) => session.setVolume(Number(e.target.value))}
          data-testid="volume"
        />
      </label>
      <button className="round" onClick={() => setSwapping(true)} data-testid="swap-open">
        <SwapIcon />
        <span>Face</span>
      </button>
      <button className="end" onClick={onEnd} data-testid="end">
        End
      </button>
      {swapError && <span className="error small" role="alert">{swapError}</span>}
      {session.micError && (
        <p className="error small mic-error" role="alert" data-testid="mic-error">
          The microphone is off ({session.micError}). Allow it in the browser&apos;s site settings,
          then press Unmute; until then the avatar cannot hear you.
        </p>
      )}
      {swapping && (
        <Dialog title="Swap the face" wide onClose={() => setSwapping(false)}>
          <p className="muted">The avatar crossfades to the new photo; the call stays up.</p>
          <FacePicker
            selected={null}
            onSelect={async (face) => {
              setSwapping(false);
              if (!session.sessionId) return;
              setSwapError(await swapFace(session.sessionId, await face.load()));
            }}
          />
          <div className="row end">
            <button className="ghost" onClick={() => setSwapping(false)}>Cancel</button>
          </div>
        </Dialog>
      )}
    </div>
  );
}

interface StartProps {
  face: FaceChoice | null;
  setFace: (f: FaceChoice) => void;
  mode: Mode;
  setMode: (m: Mode) => void;
  start: () => Promise<void>;
  realtime: boolean;
  ended: Ended | null;
  error: string | null;
  dropped: string | null;
  starting: boolean;
}

function StartPanel(props: StartProps) {
  const { face, setFace, mode, setMode, start, realtime, ended, error, dropped, starting } = props;
  return (
    <div className="start">
      {dropped && (
        <p className="error" role="alert" data-testid="dropped">
          The session ended by itself ({dropped.replaceAll("_", " ")}). Start again when ready.
        </p>
      )}
      {ended && (
        <div className="summary" data-testid="summary">
          <div>
            <span className="label">Session ended</span>
            <strong>{formatDuration(ended.duration_seconds)}</strong>
          </div>
          <div>
            <span className="label">Cost</span>
            <strong data-testid="cost">{ended.estimated_cost}</strong>
          </div>
        </div>
      )}
      <h2>Start a live session</h2>
      <p className="muted">Pick a face, upload one, or take a photo.</p>
      <FacePicker selected={face} onSelect={setFace} />
      <div className="segmented" role="radiogroup">
        {(["conversation", "passthrough"] as const).map((m) => (
          <button
            key={m}
            role="radio"
            aria-checked={mode === m}
            className={mode === m ? "on" : ""}
            onClick={() => setMode(m)}
            data-mode={m}
          >
            <strong>{m === "conversation" ? "Conversation" : "Passthrough"}</strong>
            <span>{m === "conversation" ? "It listens and answers" : "It speaks your audio"}</span>
          </button>
        ))}
      </div>
      {error && <p className="error" role="alert" data-testid="error">{error}</p>}
      {!realtime && (
        <p className="error">Realtime is not configured on this server (set LIVEKIT_URL and keys).</p>
      )}
      <button
        className="primary big"
        disabled={!face || !realtime || starting}
        onClick={() => void start()}
        data-testid="start"
      >
        {starting ? "Starting…" : "Start"}
      </button>
    </div>
  );
}

function SessionPanel({ session }: { session: Session }) {
  const [text, setText] = useState("");
  const [playing, setPlaying] = useState<AudioPlaybackHandle | null>(null);
  const [playError, setPlayError] = useState<string | null>(null);
  const [canSpeak, setCanSpeak] = useState(false);
  const fileInput = useRef<HTMLInputElement>(null);
  const passthrough = session.mode === "passthrough";

  useEffect(() => () => playing?.stop(), [playing]);
  useEffect(() => void demoInfo().then((info) => setCanSpeak(info.speech)), []);

  const play = async (audio: Blob): Promise<void> => {
    setPlayError(null);
    try {
      const handle = await session.publishAudio(audio);
      setPlaying(handle);
      void handle.finished.then(() => setPlaying((h) => (h === handle ? null : h)));
    } catch (err) {
      setPlayError(err instanceof Error ? err.message : String(err));
    }
  };

  return (
    <div className="session">
      <h2>{passthrough ? "Passthrough" : "Conversation"}</h2>
      <Transcript
        messages={session.messages}
        empty={passthrough ? "Publish audio below: the avatar lip-syncs it." : undefined}
      />
      {passthrough ? (
        <div className="composer column">
          <p className="muted small">The avatar lip-syncs audio you publish (your mic too).</p>
          <div className="row">
            <button className="primary" onClick={() => fileInput.current?.click()} data-testid="play-file">
              Play an audio file…
            </button>
            <button
              className="ghost"
              data-testid="play-sample"
              onClick={async () => await play(await (await fetch(speechUrl)).blob())}
            >
              Play sample speech
            </button>
            {playing && (
              <button className="ghost" onClick={() => playing.stop()} data-testid="stop-audio">
                Stop
              </button>
            )}
          </div>
          <input
            ref={fileInput}
            type="file"
            accept="audio/*"
            hidden
            data-testid="audio-file"
            onChange={(e) => {
              const file = e.target.files?.[0];
              if (file) void play(file);
              e.target.value = "";
            }}
          />
          {canSpeak && (
            <form
              className="row"
              onSubmit={async (e) => {
                e.preventDefault();
                const spoken = await speech(text);
                if (spoken instanceof Blob) {
                  setText("");
                  await play(spoken);
                } else setPlayError(spoken.message);
              }}
            >
              <input
                value={text}
                onChange={(e) => setText(e.target.value)}
                placeholder="Type something for it to say"
                aria-label="Text for the avatar to say"
                data-testid="speech-input"
              />
              <button type="submit" className="primary" disabled={!text.trim()} data-testid="speech">
                Speak
              </button>
            </form>
          )}
          {playing && <p className="muted small" data-testid="playing">Playing through the avatar…</p>}
          {playError && <p className="error small">{playError}</p>}
        </div>
      ) : (
        <form
          className="composer"
          onSubmit={(e) => {
            e.preventDefault();
            const submitter = (e.nativeEvent as SubmitEvent).submitter as HTMLButtonElement | null;
            if (submitter?.value === "chat") session.askAgent(text);
            else session.sendChat(text);
            setText("");
          }}
        >
          <input
            value={text}
            onChange={(e) => setText(e.target.value)}
            placeholder="Say this… or chat"
            aria-label="Text for the avatar"
            data-testid="say-input"
          />
          <button type="submit" value="speak" className="primary" data-testid="say">Say</button>
          <button type="submit" value="chat" className="ghost" data-testid="chat">Chat</button>
        </form>
      )}
    </div>
  );
}

export function formatDuration(seconds: number): string {
  const s = Math.round(seconds);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
}
