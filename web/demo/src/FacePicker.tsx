/** Pick a bundled face, upload a photo, or take one with the camera. */
import { useEffect, useRef, useState } from "react";

import { Dialog } from "./Dialog.js";
import { CameraIcon, UploadIcon } from "./icons.js";
import { bundledFaces, mirroredPreviewUrl, uploadedFace, type FaceChoice } from "./faces.js";

interface Props {
  selected: FaceChoice | null;
  onSelect: (face: FaceChoice) => void;
  compact?: boolean;
}

export function FacePicker({ selected, onSelect, compact }: Props) {
  const [faces, setFaces] = useState<FaceChoice[]>(() => bundledFaces());
  const [camera, setCamera] = useState(false);
  const fileInput = useRef<HTMLInputElement>(null);

  useEffect(() => {
    void mirroredPreviewUrl().then((url) =>
      setFaces((list) => list.map((f) => (f.id === "grace-warm" ? { ...f, preview: url } : f))),
    );
  }, []);

  const add = (face: FaceChoice): void => {
    setFaces((list) => [...list, face]);
    onSelect(face);
  };

  return (
    <div className={compact ? "faces compact" : "faces"}>
      {faces.map((face) => (
        <button
          key={face.id}
          className={`face ${selected?.id === face.id ? "selected" : ""}`}
          onClick={() => onSelect(face)}
          data-face={face.id}
          title={face.label}
        >
          {face.preview ? <img src={face.preview} alt={face.label} /> : <span className="ph" />}
          <span className="face-label">{face.label}</span>
        </button>
      ))}
      <button className="face action" onClick={() => fileInput.current?.click()}>
        <span className="icon"><UploadIcon /></span>
        <span className="face-label">Upload</span>
      </button>
      <button className="face action" onClick={() => setCamera(true)}>
        <span className="icon"><CameraIcon /></span>
        <span className="face-label">Camera</span>
      </button>
      <input
        ref={fileInput}
        type="file"
        accept="image/png,image/jpeg,image/webp"
        hidden
        data-testid="face-upload"
        onChange={(e) => {
          const file = e.target.files?.[0];
          if (file) add(uploadedFace(file, file.name.replace(/\.[^.]+$/, "")));
          e.target.value = "";
        }}
      />
      {camera && (
        <CameraShot
          onClose={() => setCamera(false)}
          onShot={(blob) => {
            setCamera(false);
            add(uploadedFace(blob, "Camera"));
          }}
        />
      )}
    </div>
  );
}

function CameraShot({
  onShot,
  onClose,
}: {
  onShot: (b: Blob) => void;
  onClose: () => void;
}) {
  const video = useRef<HTMLVideoElement>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let stream: MediaStream | null = null;
    navigator.mediaDevices
      .getUserMedia({ video: { width: 720, height: 720 } })
      .then((s) => {
        stream = s;
        if (video.current) video.current.srcObject = s;
      })
      .catch(() => setError("No camera available (or permission refused)."));
    return () => stream?.getTracks().forEach((t) => t.stop());
  }, []);

  const shoot = (): void => {
    const v = video.current;
    if (!v || v.videoWidth === 0) return;
    const side = Math.min(v.videoWidth, v.videoHeight);
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = side;
    canvas
      .getContext("2d")!
      .drawImage(v, (v.videoWidth - side) / 2, (v.videoHeight - side) / 2, side, side, 0, 0, side, side);
    canvas.toBlob((b) => b && onShot(b), "image/jpeg", 0.92);
  };

  return (
    <Dialog title="Take a photo" onClose={onClose}>
      {error ? <p className="muted" role="alert">{error}</p> : <video ref={video} autoPlay playsInline muted className="camera" />}
      <div className="row end">
        <button className="ghost" onClick={onClose}>Cancel</button>
        <button className="primary" onClick={shoot} disabled={error !== null}>Use this photo</button>
      </div>
    </Dialog>
  );
}
