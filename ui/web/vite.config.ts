// Builds the UI into ../dist, the folder the collector serves (hoptrace/ui/dist in the wheel).
import { defineConfig } from "vite";

declare const process: { env: Record<string, string | undefined> }; // Node's, without @types/node

export default defineConfig({
  base: "/",
  build: {
    outDir: "../dist",
    emptyOutDir: true,
    // cytoscape alone is ~500 kB minified; the warning would only restate that.
    chunkSizeWarningLimit: 1200,
  },
  // `npm run dev`: the UI with hot reload, its API calls passed to a collector on the default port.
  server: {
    host: "127.0.0.1",
    proxy: { "/api": process.env.HOPTRACE_URL ?? "http://127.0.0.1:4318" },
  },
  oxc: {
    jsx: { runtime: "automatic", importSource: "preact" },
  },
});
