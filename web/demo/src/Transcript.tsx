/** The chat and transcript pane: user and avatar turns, interim text shown faded. */
import { useEffect, useRef } from "react";

import type { TranscriptMessage } from "../../src/core/types.js";

export function Transcript({ messages, empty }: { messages: TranscriptMessage[]; empty?: string }) {
  const end = useRef<HTMLDivElement>(null);
  useEffect(() => {
    // a block body: newer engines return a Promise from scrollIntoView, and React would take
    // a returned value for a cleanup function
    void end.current?.scrollIntoView({ block: "end" });
  }, [messages]);
  return (
    <div className="transcript" data-testid="transcript" role="log" aria-live="polite" aria-label="Transcript">
      {messages.length === 0 && <p className="muted center">{empty ?? "The conversation appears here."}</p>}
      {messages.map((m) => (
        <div key={m.id} className={`bubble ${m.role} ${m.final ? "final" : "interim"}`}>
          <span className="who">{m.role === "user" ? "You" : "Avatar"}</span>
          {m.text}
        </div>
      ))}
      <div ref={end} />
    </div>
  );
}
