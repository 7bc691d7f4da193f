// @vitest-environment node
/** Server rendering (Next.js): no `document` or `window` exists, and the hook must not need one. */
import { renderToString } from "react-dom/server";
import { describe, expect, it } from "vitest";

import { useAtlasSession } from "../src/react/index.js";

function Avatar() {
  const session = useAtlasSession({
    createSession: async () => {
      throw new Error("never called while rendering");
    },
  });
  return (
    <div>
      <div ref={session.videoRef} data-status={session.status} />
      <span>{session.muted ? "muted" : "live"}</span>
    </div>
  );
}

describe("server rendering", () => {
  it("renders the initial state with no DOM", () => {
    expect(typeof document).toBe("undefined");
    expect(typeof window).toBe("undefined");
    const html = renderToString(<Avatar />);
    expect(html).toContain('data-status="idle"');
    expect(html).toContain("muted");
  });
});
