// Drives Debian's Chromium for tests/web: one JSON command per stdin line, one JSON answer per
// stdout line. playwright-core only (no browser download): executablePath is /usr/bin/chromium.
//   {"id": 1, "op": "open", "url": "..."}            -> {"id": 1, "ok": true}
//   {"id": 2, "op": "eval", "js": "async () => ..."} -> {"id": 2, "ok": true, "result": ...}
//   ops: open, eval, click, fill, setFiles, waitFor, viewport, press, screenshot, route, close
import { createInterface } from "node:readline";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(new URL("../../../web/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const speechWav = process.env.ATLAS_FAKE_MIC_WAV;
// ATLAS_DENY_MIC=1: the person refuses the microphone (no auto-accepted prompt, no permission)
const denyMic = process.env.ATLAS_DENY_MIC === "1";
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    // pages the test serves through route() count as public; let them reach loopback LiveKit
    "--disable-features=LocalNetworkAccessChecks",
    "--use-fake-device-for-media-stream",
    ...(denyMic ? [] : ["--use-fake-ui-for-media-stream"]),
    ...(speechWav ? [`--use-file-for-fake-audio-capture=${speechWav}`] : []),
  ],
});
const context = await browser.newContext({ viewport: { width: 1400, height: 860 } });
if (!denyMic) await context.grantPermissions(["microphone", "camera"]);
let page = null;
let size = null; // a viewport asked for before a page is open applies to the next one
const logs = [];

const ops = {
  async open({ url }) {
    page = await context.newPage();
    if (size) await page.setViewportSize(size);
    page.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => logs.push(`pageerror: ${e.stack ?? e.message}`));
    await page.goto(url);
  },
  async eval({ js, arg }) {
    return await page.evaluate(`(${js})(${JSON.stringify(arg ?? null)})`);
  },
  async click({ selector }) {
    await page.click(selector, { timeout: 30000 });
  },
  async fill({ selector, value }) {
    await page.fill(selector, value, { timeout: 30000 });
  },
  async setFiles({ selector, path }) {
    await page.setInputFiles(selector, path);
  },
  // Polls with page.evaluate, which runs through the DevTools protocol: waitForFunction with a
  // string builds a Function in the page, which the page's CSP (no 'unsafe-eval') refuses.
  async waitFor({ js, arg, timeoutMs }) {
    const expression = `(${js})(${JSON.stringify(arg ?? null)})`;
    const timeout = timeoutMs ?? 60000;
    const deadline = Date.now() + timeout;
    for (;;) {
      let value = null;
      try {
        value = await page.evaluate(expression);
      } catch (error) {
        // a navigation replaced the page's context mid-call: look again
        if (!String(error).includes("context was destroyed")) throw error;
      }
      if (value) return value;
      if (Date.now() > deadline) throw new Error(`page.waitForFunction: Timeout ${timeout}ms exceeded.`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  },
  async viewport({ width, height }) {
    size = { width, height };
    await page?.setViewportSize(size);
  },
  async press({ key }) {
    await page.keyboard.press(key);
  },
  async screenshot({ path }) {
    await page.screenshot({ path });
  },
  // serve a file at a URL of the page's origin (the raw-snippet page and its module)
  // (`typescript: true`: the file is TypeScript, stripped to JavaScript with tsc's transpiler)
  async route({ url, path, body, contentType, typescript, append }) {
    let content = body ?? readFileSync(path, typescript ? "utf8" : undefined);
    if (typescript) {
      const ts = require("typescript");
      content = ts.transpileModule(content, {
        compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
      }).outputText;
    }
    if (append) content = `${content}\n${append}`;
    await context.route(url, (route) => route.fulfill({ body: content, contentType }));
  },
  async closePage() {
    await page?.close();
    page = null;
  },
  async logs() {
    return logs.splice(0);
  },
  async close() {
    await browser.close();
    process.exit(0);
  },
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const { id, op, ...args } = JSON.parse(line);
  try {
    const result = await ops[op](args);
    process.stdout.write(JSON.stringify({ id, ok: true, result: result ?? null }) + "\n");
  } catch (err) {
    process.stdout.write(JSON.stringify({ id, ok: false, error: String(err?.stack ?? err) }) + "\n");
  }
}
await browser.close();
