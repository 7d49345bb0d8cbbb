/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";
import { fileURLToPath } from "node:url";

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

// The production build is embedded in the stoa binary (src/console.rs) and committed under
// dist/, so a fresh clone's `cargo run` needs no Node. File names carry a content hash and
// are served with a year's cache; index.html is not.
export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    chunkSizeWarningLimit: 1500,
  },
  server: {
    // The runbooks page is docs/RUNBOOKS.md; its test reads the alert rules too.
    fs: { allow: [here("."), here("../docs"), here("../grafana/alerts")] },
    // `npm run dev` against a server on :8080.
    proxy: {
      "/api": "http://127.0.0.1:8080",
      "/socket": { target: "ws://127.0.0.1:8080", ws: true },
      "/yjs": { target: "ws://127.0.0.1:8080", ws: true },
    },
  },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.ts", "src/**/*.test.tsx"],
  },
});
