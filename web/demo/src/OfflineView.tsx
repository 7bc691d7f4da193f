/** Offline: upload audio and a photo, watch the job, play the MP4. */
import { useEffect, useState } from "react";

import { pollJob, submitJob, type Job } from "./api.js";
import { FacePicker } from "./FacePicker.js";
import { NoteIcon } from "./icons.js";
import type { FaceChoice } from "./faces.js";

export function OfflineView() {
  const [audio, setAudio] = useState<File | null>(null);
  const [face, setFace] = useState<FaceChoice | null>(null);
  const [job, setJob] = useState<Job | null>(null);
  const [error, setError] = useState<string | null>(null);
  const busy = job !== null && (job.status === "pending" || job.status === "processing");

  useEffect(() => {
    if (!job || !busy) return;
    const timer = setTimeout(() => {
      pollJob(job.job_id).then(setJob, () => setError("Lost contact with the server; retrying…"));
    }, 1000);
    return () => clearTimeout(timer);
  }, [job, busy]);

  const submit = async (): Promise<void> => {
    if (!audio || !face) return;
    setError(null);
    setJob(null);
    const result = await submitJob(audio, await face.load());
    if ("message" in result && !("job_id" in result)) setError(result.message);
    else setJob(result as Job);
  };

  const percent = job?.status === "completed" ? 100 : Math.max(job?.progress ?? 0, busy ? 3 : 0);
  return (
    <div className="offline">
      <section className="panel">
        <h2>Render a video</h2>
        <p className="muted">Any speech audio and one face photo make a lip-synced MP4.</p>
        <label className="drop">
          <input
            type="file"
            accept="audio/*"
            data-testid="offline-audio"
            onChange={(e) => setAudio(e.target.files?.[0] ?? null)}
          />
          <span className="icon"><NoteIcon /></span>
          <span>{audio ? audio.name : "Choose speech audio (wav, mp3, ogg, webm)"}</span>
        </label>
        <FacePicker selected={face} onSelect={setFace} compact />
        <button className="primary big" disabled={!audio || !face || busy} onClick={() => void submit()} data-testid="render">
          {busy ? "Rendering…" : "Render MP4"}
        </button>
        {error && <p className="error">{error}</p>}
        {job && (
          <div className="job" data-testid="job">
            <div className="row between">
              <span className="label">{statusText(job)}</span>
              <span className="muted">{percent}%</span>
            </div>
            <div className="bar"><div style={{ width: `${percent}%` }} /></div>
            {job.status === "failed" && <p className="error">{job.error}</p>}
          </div>
        )}
      </section>
      <section className="stage-wrap">
        <div className="stage">
          {job?.status === "completed" && job.url ? (
            <video src={job.url} controls autoPlay playsInline data-testid="mp4" />
          ) : (
            <div className="stage-cover">
              {face?.preview ? <img src={face.preview} alt="" /> : <div className="glow" />}
            </div>
          )}
        </div>
        {job?.status === "completed" && job.url && (
          <a className="ghost button" href={job.url} download="atlas.mp4">Download MP4</a>
        )}
      </section>
    </div>
  );
}

function statusText(job: Job): string {
  switch (job.status) {
    case "pending":
      return job.queue_position > 0 ? `Queued · ${job.queue_position} ahead` : "Queued";
    case "processing":
      return "Rendering";
    case "completed":
      return "Done";
    default:
      return "Failed";
  }
}
