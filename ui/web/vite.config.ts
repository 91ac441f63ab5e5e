// Builds the UI into ../dist, the folder the collector serves (hoptrace/ui/dist in the wheel).
import { defineConfig } from "vite";

export default defineConfig({
  base: "/",
  build: {
    outDir: "../dist",
    emptyOutDir: true,
    // cytoscape alone is ~500 kB minified; the warning would only restate that.
    chunkSizeWarningLimit: 1200,
  },
  oxc: {
    jsx: { runtime: "automatic", importSource: "preact" },
  },
});
