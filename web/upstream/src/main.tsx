/**
 * The published @northmodellabs/atlas-react, used as its README shows (conversation: a face
 * upload; passthrough: JSON with face_url), against this server's demo broker. Only the test's
 * handle on `window` is added. tests/web/test_browser.py drives it in Chromium.
 *   /upstream/#mode=conversation            face.jpg uploaded as `face`
 *   /upstream/#mode=passthrough&face_url=…  JSON create, mic left off (a hash: the test serves
 *   the built files with Playwright routes, which match URLs without a query)
 */
import { useAtlasSession, type AtlasSession } from "@northmodellabs/atlas-react";
import { useEffect } from "react";
import { createRoot } from "react-dom/client";

import faceUrl from "../../../tests/fixtures/face.jpg?url";

declare global {
  interface Window {
    upstream?: { session: AtlasSession; deleted: string[]; face: () => Promise<File> };
  }
}

const params = new URLSearchParams(location.hash.slice(1));
const passthrough = params.get("mode") === "passthrough";
const deleted: string[] = [];

async function myFaceFile(): Promise<File> {
  const blob = await (await fetch(faceUrl)).blob();
  return new File([blob], "face.jpg", { type: "image/jpeg" });
}

function AvatarPage() {
  const session = useAtlasSession({
    createSession: passthrough
      ? async () => {
          const res = await fetch("/api/session", {
            method: "POST",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ face_url: params.get("face_url"), mode: "passthrough" }),
          });
          return res.json();
        }
      : async (face) => {
          const form = new FormData();
          if (face) form.append("face", face);
          form.append("mode", "conversation");
          const res = await fetch("/api/session", { method: "POST", body: form });
          return res.json(); // { sessionId, livekitUrl, token }
        },
    deleteSession: async (id) => {
      deleted.push(id);
      await fetch(`/api/session/${id}`, { method: "DELETE" });
    },
    ...(passthrough ? { autoEnableMic: false } : {}),
  });

  useEffect(() => {
    window.upstream = { session, deleted, face: myFaceFile };
  });

  return (
    <div>
      <div ref={session.videoRef} style={{ width: 512, height: 512 }} data-testid="avatar" />
      <p data-testid="status">{session.status}</p>
      {session.messages
        .filter((m) => m.final)
        .map((msg) => (
          <p key={msg.id} className={`msg ${msg.role}`}>
            <b>{msg.role}:</b> {msg.text}
          </p>
        ))}
    </div>
  );
}

createRoot(document.getElementById("root")!).render(<AvatarPage />);
