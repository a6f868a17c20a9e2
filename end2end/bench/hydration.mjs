// Time to first byte and to hydration of a page, in Debian's Chromium, as a signed-in user.
// Usage: node hydration.mjs <baseURL> <email> <path> [runs]
// Prints JSON: medians (ms) of responseStart, domContentLoaded and hydration (the moment the
// app flips #app[data-hydrated] — an Effect, so it runs only once the wasm has hydrated).
import { launch } from "./browser.mjs";

const [base, email, path = "/board", runsArg = "7"] = process.argv.slice(2);
const runs = Number(runsArg);
const browser = await launch();
const context = await browser.newContext({ baseURL: base, viewport: { width: 1440, height: 900 } });
const login = await context.request.post("/auth/login", { data: { email, password: "turns-demo" } });
if (!login.ok()) throw new Error(`login ${email}: ${login.status()}`);
await context.addInitScript(() => {
  new MutationObserver((_, obs) => {
    const app = document.getElementById("app");
    if (app && app.getAttribute("data-hydrated") === "true") {
      window.__hydratedAt = performance.now();
      obs.disconnect();
    }
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-hydrated"] });
});
const samples = [];
for (let i = 0; i < runs + 1; i++) {
  const page = await context.newPage();
  await page.goto(path);
  await page.waitForFunction(() => window.__hydratedAt !== undefined, null, { timeout: 60_000 });
  const t = await page.evaluate(() => {
    const nav = performance.getEntriesByType("navigation")[0];
    return { ttfb: nav.responseStart, dcl: nav.domContentLoadedEventEnd, hydrated: window.__hydratedAt,
      bytes: nav.transferSize, cards: document.querySelectorAll("[data-testid=turn-card]").length };
  });
  if (i > 0) samples.push(t); // the first run warms caches (wasm compile cache, DB buffers)
  await page.close();
}
await browser.close();
const median = (k) => {
  const v = samples.map((s) => s[k]).sort((a, b) => a - b);
  return v[Math.floor(v.length / 2)];
};
console.log(JSON.stringify({ runs, ttfb: median("ttfb"), dcl: median("dcl"), hydrated: median("hydrated"),
  bytes: median("bytes"), cards: median("cards") }));
