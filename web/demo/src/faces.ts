/** The faces the page offers: a bundled public-domain photo, a mirrored variant, or your own. */
import graceUrl from "../../../tests/fixtures/face.jpg?url";

export interface FaceChoice {
  id: string;
  label: string;
  /** A URL the <img> can show (object URLs for uploads and camera shots). */
  preview: string;
  load: () => Promise<Blob>;
}

async function fetchBlob(url: string): Promise<Blob> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`cannot load ${url}`);
  return await res.blob();
}

/** A mirrored, warmer copy of a photo: a visibly different face for trying face swap. */
async function mirrored(url: string): Promise<Blob> {
  const bitmap = await createImageBitmap(await fetchBlob(url));
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d")!;
  ctx.translate(bitmap.width, 0);
  ctx.scale(-1, 1);
  ctx.filter = "sepia(0.35) saturate(1.3) hue-rotate(-8deg) brightness(1.05)";
  ctx.drawImage(bitmap, 0, 0);
  return await new Promise((resolve, reject) =>
    canvas.toBlob((b) => (b ? resolve(b) : reject(new Error("toBlob failed"))), "image/jpeg", 0.92),
  );
}

let mirroredPreview: Promise<string> | null = null;

export function bundledFaces(): FaceChoice[] {
  mirroredPreview ??= mirrored(graceUrl).then((b) => URL.createObjectURL(b));
  return [
    { id: "grace", label: "Grace", preview: graceUrl, load: () => fetchBlob(graceUrl) },
    {
      id: "grace-warm",
      label: "Grace, mirrored",
      preview: "",
      load: async () => await fetchBlob(await mirroredPreview!),
    },
  ];
}

export async function mirroredPreviewUrl(): Promise<string> {
  mirroredPreview ??= mirrored(graceUrl).then((b) => URL.createObjectURL(b));
  return await mirroredPreview;
}

export function uploadedFace(file: Blob, label: string): FaceChoice {
  const preview = URL.createObjectURL(file);
  return { id: `upload-${preview}`, label, preview, load: async () => file };
}

/** A face by name (`grace`, `grace-warm`) for kiosk links; null when unknown. */
export function faceByName(name: string): FaceChoice | null {
  return bundledFaces().find((f) => f.id === name) ?? null;
}
