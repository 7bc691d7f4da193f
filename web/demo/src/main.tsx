/** The demo page: the live demo, offline rendering, or kiosk mode (?kiosk=1). */
import { useEffect, useState } from "react";
import { createRoot } from "react-dom/client";

import { demoInfo, type DemoInfo, type Mode } from "./api.js";
import { Kiosk } from "./Kiosk.js";
import { LiveView } from "./LiveView.js";
import { OfflineView } from "./OfflineView.js";
import "./styles.css";

function App() {
  const [tab, setTab] = useState<"live" | "offline">("live");
  const [info, setInfo] = useState<DemoInfo | null>(null);
  useEffect(() => void demoInfo().then(setInfo), []);
  return (
    <div className="app">
      <header>
        <div className="brand"><span className="logo" />Atlas <span className="muted">avatars</span></div>
        <nav>
          <button className={tab === "live" ? "on" : ""} onClick={() => setTab("live")} data-tab="live">Live</button>
          <button className={tab === "offline" ? "on" : ""} onClick={() => setTab("offline")} data-tab="offline">Offline</button>
        </nav>
        <a className="muted small" href="/docs" target="_blank" rel="noreferrer">API docs ↗</a>
      </header>
      {info && !info.broker && (
        <div className="banner">
          The demo's session broker is off. Start the server with <code>ATLAS_DEMO=1</code> (or <code>make dev</code>).
        </div>
      )}
      <main>{tab === "live" ? <LiveView realtime={info?.realtime ?? true} /> : <OfflineView />}</main>
    </div>
  );
}

const params = new URLSearchParams(location.search);
const kiosk = params.get("kiosk") === "1";
const mode: Mode = params.get("mode") === "passthrough" ? "passthrough" : "conversation";
document.body.classList.toggle("kiosk-body", kiosk);
createRoot(document.getElementById("root")!).render(
  <>{kiosk ? <Kiosk faceName={params.get("face") ?? "grace"} mode={mode} /> : <App />}</>,
);
