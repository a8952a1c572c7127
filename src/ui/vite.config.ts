// Builds the web UI (src/ui) into dist/ui, which `fledge serve` serves at `/`.
// `npm run dev:ui` serves it with hot reload and proxies the API to a running Fledge
// (FLEDGE_URL, default http://127.0.0.1:7099).
import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

const root = fileURLToPath(new URL('.', import.meta.url));
const api = process.env.FLEDGE_URL ?? 'http://127.0.0.1:7099';

export default defineConfig({
  root,
  base: '/',
  plugins: [react()],
  build: {
    outDir: fileURLToPath(new URL('../../dist/ui', import.meta.url)),
    emptyOutDir: true,
    sourcemap: true,
    chunkSizeWarningLimit: 1024,
  },
  server: {
    proxy: { '/api': api, '/health': api, '/metrics': api },
  },
});
