import { defineConfig } from 'vitest/config';
import { svelte } from '@sveltejs/vite-plugin-svelte';

// The build lands inside the Python package; swapd serves it at /ui/.
// Vitest runs in mode 'test': components resolve to Svelte's browser build there.
export default defineConfig(({ mode }) => ({
  base: '/ui/',
  plugins: [svelte()],
  build: {
    outDir: '../src/swapd/web/dist',
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 200,
  },
  server: { proxy: { '^/(api|v1|logs|running|upstream|health)': 'http://127.0.0.1:8080' } },
  resolve: mode === 'test' ? { conditions: ['browser'] } : undefined,
  test: { environment: 'jsdom', include: ['tests/**/*.test.ts'] },
}));
