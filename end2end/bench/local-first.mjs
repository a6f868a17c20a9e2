// Local-first timings in Debian's Chromium, as a signed-in property manager.
// Usage: node local-first.mjs <baseURL> <email> [runs]
// Prints JSON (medians and p95, ms):
// - click: a click on a card's "move forward" button until the moved card is in the DOM of its new
//   column, measured in the page (click event timestamp → the next animation frame after the DOM
//   changed: the frame that paints it);
// - offline: reload with the network off → the board rendered from local storage (the sync bar
//   shows the stored sync time), from navigation start;
// - turns: how many turns the local store holds (cards rendered are capped at 100 per column);
// - drawer: the notes and photos the device shows offline in the moved card's drawer.
import { launch, logIn } from "./browser.mjs";

const [base, email, runsArg = "31"] = process.argv.slice(2);
const runs = Number(runsArg);
const browser = await launch();
const context = await browser.newContext({ baseURL: base, viewport: { width: 1440, height: 900 } });
// Records when the board first shows local data after hydration (the sync bar's stored sync time).
await context.addInitScript(() => {
  new MutationObserver((_, obs) => {
    const hydrated = document.getElementById("app")?.getAttribute("data-hydrated") === "true";
    if (hydrated && document.querySelector("[data-testid=last-synced]")?.textContent) {
      window.__localAt = performance.now();
      obs.disconnect();
    }
  }).observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
});
const page = await context.newPage();
await logIn(page, email);
const live = async () => {
  await page.waitForSelector('#app[data-hydrated="true"]', { timeout: 60_000 });
  await page.waitForFunction(() => document.querySelector("[data-testid=last-synced]")?.textContent, null, { timeout: 120_000 });
};
await live();
await page.waitForSelector('html[data-offline="ready"]', { timeout: 60_000 });
const saved = () => page.waitForFunction(
  () => document.querySelector("[data-testid=pending-count]")?.textContent === "All changes saved", null, { timeout: 60_000 });

// Click → painted. A card in the first column, moved forward and back.
const stages = await page.locator("section.column").evaluateAll((cs) => cs.map((c) => c.dataset.stage));
const turn = await page.locator(`section.column[data-stage="${stages[0]}"] [data-testid=turn-card]`).first().getAttribute("data-turn");
const click = [];
for (let i = 0; i < runs + 1; i++) {
  const [from, to] = i % 2 === 0 ? [stages[0], stages[1]] : [stages[1], stages[0]];
  const button = page.locator(`section.column[data-stage="${from}"] [data-turn="${turn}"] [data-testid=${i % 2 === 0 ? "move-forward" : "move-back"}]`);
  await button.waitFor();
  const handle = await button.elementHandle();
  const ms = await page.evaluate(([el, to, turn]) => new Promise((resolve) => {
    let start;
    el.addEventListener("click", (e) => { start = e.timeStamp; }, { capture: true, once: true });
    const check = () => {
      if (document.querySelector(`section.column[data-stage="${to}"] [data-turn="${turn}"]`)) resolve(performance.now() - start);
      else requestAnimationFrame(check);
    };
    el.click();
    requestAnimationFrame(check);
  }), [handle, to, turn]);
  if (i > 0) click.push(ms);
  await saved();
}

// Reload offline → board from local storage.
await context.setOffline(true);
const offline = [];
let turns = 0;
for (let i = 0; i < Math.min(runs, 7) + 1; i++) {
  await page.reload();
  await live();
  const t = await page.evaluate(() => {
    const nav = performance.getEntriesByType("navigation")[0];
    return { ready: window.__localAt, start: nav.startTime, cards: document.querySelectorAll("[data-testid=turn-card]").length,
      count: document.querySelector("[data-testid=visible-count]")?.textContent };
  });
  turns = Number((t.count ?? "").split(" of ")[1]?.split(" ")[0] ?? 0);
  if (i > 0) offline.push(t.ready - t.start);
}
// What the device holds beside the cards, read with the network still off: the notes and
// photos of the moved card's turn, in its drawer (0 when the portfolio has none).
await page.locator(`[data-turn="${turn}"] [data-testid=open-turn]`).first().click();
await page.waitForSelector("[data-testid=field-notes]");
const drawer = await page.evaluate(() => ({
  photos: document.querySelectorAll("[data-testid=field-notes] [data-testid=photo]").length,
  notes: document.querySelectorAll("[data-testid=field-notes] [data-testid=note]").length,
}));
await browser.close();
const stat = (v) => {
  const s = [...v].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)], p95: s[Math.min(s.length - 1, Math.ceil(s.length * 0.95) - 1)] };
};
const samples = (v) => [...v].sort((a, b) => a - b).map((x) => Math.round(x * 10) / 10);
console.log(JSON.stringify({ click: { ...stat(click), samples: samples(click) }, offline: stat(offline), turns, drawer }));
