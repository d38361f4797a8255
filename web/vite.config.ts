// Vite builds the app into web/dist, which Envoy serves at / on the API's own port
// (reels_dev/infra/envoy.py renders one route per file): same origin, no CORS.
// `npm run dev` serves it on :5173 and proxies the API to Envoy (REELS_ENVOY_PORT).
import { defineConfig } from "vite";

const envoy = `http://127.0.0.1:${process.env.REELS_ENVOY_PORT ?? "8080"}`;

export default defineConfig({
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // Hashed file names under assets/ are what Envoy serves as immutable.
    assetsDir: "assets",
    target: "es2022",
    sourcemap: false,
  },
  server: {
    host: "127.0.0.1",
    port: 5173,
    strictPort: true,
    proxy: {
      // gRPC-web (every reels.v1 service), the JSON API (+ the chat WebSocket), media.
      "^/reels\\.v1\\.[A-Za-z]+/": { target: envoy },
      "/api/": { target: envoy, ws: true },
      "/media/": { target: envoy },
    },
  },
});
