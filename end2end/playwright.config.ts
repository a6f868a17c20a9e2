import { defineConfig } from "@playwright/test";
import path from "node:path";

// The release server, on its own port and its own private PostgreSQL cluster (wiped per run,
// so the demo data is fresh). Debian's Chromium: Playwright never downloads a browser here.
const port = process.env.E2E_PORT ?? "3100";
const root = path.resolve(__dirname, "..");
const dataDir = path.join(root, "target", "e2e-data");
// Fixed so tests can write with psql; the secret enables the generic /v1/shape endpoint.
export const pgPort = process.env.E2E_PG_PORT ?? "54329";
export const shapeSecret = "e2e-shape-secret";
export const databaseUrl = () =>
  `postgres://turns:${require("node:fs").readFileSync(path.join(dataDir, "postgres", "superuser-password"), "utf8").trim()}@127.0.0.1:${pgPort}/turns`;

const chromium = {
  browserName: "chromium" as const,
  launchOptions: {
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  },
};

const settings = /settings\.spec\.ts/;

export default defineConfig({
  testDir: "./tests",
  outputDir: "./test-results",
  // A test may wait up to 30 s for the service worker's first install (slow on a loaded machine)
  // and then do its work.
  timeout: 60_000,
  expect: { timeout: 10_000 },
  fullyParallel: true,
  workers: 2,
  retries: 0,
  reporter: [["list"]],
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    screenshot: "only-on-failure",
    trace: "retain-on-failure",
  },
  // The settings tests change what every other test leans on (stage names and order, the QC
  // checklist, the cost templates), so they run last, alone (`--no-deps` runs them by themselves).
  projects: [
    { name: "phone", testIgnore: settings, use: { ...chromium, viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true } },
    { name: "tablet", testIgnore: settings, use: { ...chromium, viewport: { width: 1024, height: 768 }, hasTouch: true } },
    { name: "desktop", testIgnore: settings, use: { ...chromium, viewport: { width: 1440, height: 900 } } },
    { name: "settings", testMatch: settings, dependencies: ["phone", "tablet", "desktop"], use: { ...chromium, viewport: { width: 1440, height: 900 } } },
  ],
  webServer: {
    command: `rm -rf "${dataDir}" && exec "${root}/target/release/turns-app"`,
    cwd: root,
    url: `http://127.0.0.1:${port}/health`,
    timeout: 120_000,
    reuseExistingServer: false,
    stdout: "pipe",
    env: {
      LEPTOS_OUTPUT_NAME: "turns",
      LEPTOS_SITE_ROOT: "target/site",
      LEPTOS_SITE_PKG_DIR: "pkg",
      LEPTOS_SITE_ADDR: `127.0.0.1:${port}`,
      LEPTOS_ENV: "PROD",
      TURNS_DATA_DIR: dataDir,
      TURNS_PG_PORT: pgPort,
      SHAPE_SECRET: shapeSecret,
      SHAPE_LONG_POLL_SECS: "5",
      DATABASE_URL: "",
      RUST_LOG: "warn",
    },
  },
});
