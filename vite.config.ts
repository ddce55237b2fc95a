import { defineConfig } from "vitest/config";

// The tray app's front end lives in ui/; `tauri dev` serves it on a fixed port, `tauri build`
// takes ui/dist.
export default defineConfig({
  root: "ui",
  clearScreen: false,
  server: { port: 5173, strictPort: true },
  build: { outDir: "dist", emptyOutDir: true, target: "safari13" },
  test: {
    root: ".",
    include: ["ui/src/**/*.test.ts"],
    environment: "jsdom",
  },
});
