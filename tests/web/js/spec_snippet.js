import { Room, RoomEvent } from "livekit-client";

async function startRealtimeAvatar(faceUrl?: string) {
  // Step 1 — Create session via your backend (which calls Atlas API)
  const res = await fetch("/api/realtime-session", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ face_url: faceUrl }),
  });
  const { session_id, livekit_url, token, room: roomName } = await res.json();

  // Step 2 — Connect to LiveKit room
  const room = new Room();
  room.on(RoomEvent.TrackSubscribed, (track) => {
    if (track.kind === "video") {
      const element = track.attach();
      document.getElementById("avatar-container")?.appendChild(element);
    }
  });

  await room.connect(livekit_url, token);
  console.log("Connected to room:", roomName);

  return { room, sessionId: session_id };
}
