// First sync of a portfolio on a new device, in Debian's Chromium, as a signed-in manager.
// Usage: node first-sync.mjs <baseURL> <email> [runs]
// Prints JSON (medians, ms, and rows/s):
// - app: a new device (empty storage) opens the board; from hydration (when the client starts
//   syncing) until it has followed its turns shape to up-to-date and shows its sync time (the
//   reference shapes are followed alongside);
// - endpoint: the same turns shape read alone by fetch in the same page (snapshot, then
//   catch-up requests until up-to-date), parsed as JSON: the baseline.
import { launch, logIn } from "./browser.mjs";

const [base, email, runsArg = "5"] = process.argv.slice(2);
const runs = Number(runsArg);
const browser = await launch();
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

const app = [];
const endpoint = [];
let rows = 0;
for (let i = 0; i < runs + 1; i++) {
  const context = await browser.newContext({ baseURL: base, viewport: { width: 1440, height: 900 } });
  await context.addInitScript(() => {
    new MutationObserver((_, obs) => {
      if (!window.__hydratedAt && document.getElementById("app")?.getAttribute("data-hydrated") === "true") {
        window.__hydratedAt = performance.now();
      }
      if (window.__hydratedAt && document.querySelector("[data-testid=last-synced]")?.textContent) {
        window.__syncedAt = performance.now();
        obs.disconnect();
      }
    }).observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
  });
  const page = await context.newPage();
  await logIn(page, email);
  await page.waitForFunction(() => document.querySelector("[data-testid=last-synced]")?.textContent, null, { timeout: 120_000 });
  await page.waitForFunction(() => window.__syncedAt);
  const took = await page.evaluate(() => window.__syncedAt - window.__hydratedAt);
  const user = await page.evaluate(() => fetch("/api/me", { method: "POST" }).then((r) => r.json()).then((u) => u.id));
  const alone = await page.evaluate(async (user) => {
    const start = performance.now();
    let query = "offset=-1";
    let n = 0;
    for (;;) {
      const r = await fetch(`/api/shapes/turns?${query}&cache-buster=${Math.random()}`, { headers: { "X-Turns-User": user } });
      const messages = await r.json();
      n += messages.filter((m) => m.headers.operation).length;
      query = `offset=${r.headers.get("electric-offset")}&handle=${r.headers.get("electric-handle")}`;
      if (r.headers.get("electric-up-to-date") !== null) break;
    }
    return { ms: performance.now() - start, rows: n };
  }, user);
  if (i > 0) {
    app.push(took);
    endpoint.push(alone.ms);
  }
  rows = alone.rows;
  await context.close();
}
await browser.close();
const appMs = median(app);
const endpointMs = median(endpoint);
console.log(JSON.stringify({
  rows,
  app: { median: appMs, rowsPerSecond: rows / (appMs / 1000) },
  endpoint: { median: endpointMs, rowsPerSecond: rows / (endpointMs / 1000) },
}));
