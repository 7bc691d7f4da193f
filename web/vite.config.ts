import { defineConfig } from "vite";
import { fileURLToPath } from "node:url";

// The demo page: built to dist/demo, served by `atlas serve` at /demo.
export default defineConfig({
  root: fileURLToPath(new URL("./demo", import.meta.url)),
  base: "/demo/",
  esbuild: { jsx: "automatic" },
  build: {
    outDir: fileURLToPath(new URL("./dist/demo", import.meta.url)),
    emptyOutDir: true,
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 1024,
  },
  server: {
    fs: { allow: [fileURLToPath(new URL("..", import.meta.url))] },
    proxy: { "/api": "http://127.0.0.1:8000", "/files": "http://127.0.0.1:8000" },
  },
});
