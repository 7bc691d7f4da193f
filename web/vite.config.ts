import { defineConfig } from "vite";
import { fileURLToPath } from "node:url";

const here = (path: string): string => fileURLToPath(new URL(path, import.meta.url));

// The demo page: built to dist/demo, served by `atlas serve` at /demo.
// `--mode upstream`: the test page that uses the published @northmodellabs/atlas-react exactly as
// its README shows (tests/web serves it at /upstream/ of the API's origin).
export default defineConfig(({ mode }) => {
  const page = mode === "upstream" ? "upstream" : "demo";
  return {
    root: here(`./${page}`),
    base: `/${page}/`,
    esbuild: { jsx: "automatic" },
    build: {
      outDir: here(`./dist/${page}`),
      emptyOutDir: true,
      assetsInlineLimit: 0,
      chunkSizeWarningLimit: 1024,
    },
    server: {
      fs: { allow: [here("..")] },
      proxy: { "/api": "http://127.0.0.1:8000", "/files": "http://127.0.0.1:8000" },
    },
  };
});
