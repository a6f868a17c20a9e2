// A phone photo of about 4 MB, taken by the demo vendor on a phone with no signal and kept on the
// device, from the moment the signal returns until the server has stored it, made its thumbnail,
// attached it to the turn, and the device shows the server's thumbnail (the `photos` shape
// delivered it); and the bytes that crossed the wire for it.
// Baseline, in the same page and run: the same bytes sent by `fetch` as the same chunk PUTs
// (no device queue, no IndexedDB, no finish: no joining, decoding, thumbnail or attaching).
// Usage: node photo-upload.mjs <baseURL> [runs]   (a server with the demo data at baseURL)
// Prints JSON: medians (ms), bytes, and the ratio.
import { launch, logIn } from "./browser.mjs";

const [base, runsArg = "5"] = process.argv.slice(2);
const runs = Number(runsArg);
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const browser = await launch();
const context = await browser.newContext({
  baseURL: base, viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true,
});
const page = await context.newPage();
await logIn(page, "vendor@turns.demo");
await page.waitForFunction(() => document.querySelector("[data-testid=last-synced]")?.textContent, null, { timeout: 60_000 });

// The photo: 4000 × 3000 (12 MP, a phone camera's), light and texture like a room, JPEG at the
// quality that brings it nearest 4 MB from below.
const photo = Buffer.from(await page.evaluate(async () => {
  const c = new OffscreenCanvas(4000, 3000);
  const g = c.getContext("2d");
  const grad = g.createLinearGradient(0, 0, 4000, 3000);
  grad.addColorStop(0, "#d8cfc4");
  grad.addColorStop(1, "#6b5b4b");
  g.fillStyle = grad;
  g.fillRect(0, 0, 4000, 3000);
  const img = g.getImageData(0, 0, 4000, 3000);
  let seed = 12345;
  for (let i = 0; i < img.data.length; i += 4) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const n = (seed >>> 24) % 48 - 24;
    img.data[i] += n; img.data[i + 1] += n; img.data[i + 2] += n;
  }
  g.putImageData(img, 0, 0);
  let blob;
  for (const q of [0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5]) {
    blob = await c.convertToBlob({ type: "image/jpeg", quality: q });
    if (blob.size <= 4.2e6) break;
  }
  const bytes = new Uint8Array(await blob.arrayBuffer());
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}), "base64");
if (process.env.PHOTO_OUT) (await import("node:fs")).writeFileSync(process.env.PHOTO_OUT, photo);

let wire = null;
page.on("requestfinished", async (r) => {
  if (!wire || !/\/api\/(turns\/[^/]+\/photos|photos)\//.test(r.url())) return;
  const s = await r.sizes();
  const thumb = r.url().endsWith("/thumb");
  // Playwright does not see the size of a Blob body: its Content-Length says it.
  const body = Number((await r.allHeaders())["content-length"] ?? s.requestBodySize);
  wire.up += s.requestHeadersSize + body;
  wire[thumb ? "thumbDown" : "down"] += s.responseHeadersSize + s.responseBodySize;
  if (r.method() === "PUT") wire.chunks += 1;
  if (r.method() === "POST") {
    const t = r.timing();
    wire.finish = t.responseEnd - t.requestStart;
  }
  const m = r.url().match(/\/api\/turns\/([^/]+)\/photos\/([^/]+)/);
  if (m) [wire.turn, wire.photo] = [m[1], m[2]];
});

const app = [];
const attachedAt = [];
const baseline = [];
const sizes = [];
for (let i = 0; i < runs + 1; i++) {
  await page.locator("[data-testid=turn-card]").first().getByTestId("open-turn").click();
  const drawer = page.getByTestId("drawer");
  await context.setOffline(true);
  await page.getByTestId("add-photos").setInputFiles([{ name: "room.jpg", mimeType: "image/jpeg", buffer: photo }]);
  await drawer.getByTestId("queued-photo").waitFor();
  wire = { up: 0, down: 0, thumbDown: 0, chunks: 0, turn: null, finish: 0 };
  const start = Date.now();
  await context.setOffline(false);
  await page.waitForFunction(() => !document.querySelector("[data-testid=photos-waiting]"), null, { timeout: 120_000 });
  const attached = Date.now() - start;
  // The server's thumbnail of this photo, shown from the photos shape (scrolled to: thumbnails
  // load lazily), loaded.
  const thumb = page.locator(`[data-testid=drawer] img[src="/api/photos/${wire.photo}/thumb"]`);
  await thumb.waitFor({ state: "attached", timeout: 120_000 });
  await thumb.scrollIntoViewIfNeeded();
  await page.waitForFunction((id) => {
    const img = document.querySelector(`[data-testid=drawer] img[src="/api/photos/${id}/thumb"]`);
    return img && img.complete && img.naturalWidth > 0 && !document.querySelector("[data-testid=queued-photo]");
  }, wire.photo, { timeout: 120_000 }).catch(async (e) => {
    console.error("stuck on", wire.photo, await page.evaluate(() => ({
      queued: [...document.querySelectorAll("[data-testid=queued-photo-status]")].map((q) => q.textContent),
      photos: [...document.querySelectorAll("[data-testid=drawer] [data-testid=photo]")].map((i) => i.getAttribute("src") + " " + i.complete + " " + i.naturalWidth),
    })));
    throw e;
  });
  const took = Date.now() - start;
  await page.waitForTimeout(300); // let the last sizes arrive
  const w = wire;
  wire = null; // the baseline's requests are not the app's
  // Baseline: the same bytes, the same chunks, straight from the page with fetch.
  const plain = await page.evaluate(async ({ b64, turn }) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const user = await fetch("/api/me", { method: "POST" }).then((r) => r.json()).then((u) => u.id);
    const id = crypto.randomUUID();
    const size = 512 * 1024;
    const t0 = performance.now();
    for (let i = 0; i * size < bytes.length; i++) {
      const r = await fetch(`/api/turns/${turn}/photos/${id}/chunks/${i}`, {
        method: "PUT", headers: { "X-Turns-User": user, "content-type": "application/octet-stream" },
        body: bytes.subarray(i * size, (i + 1) * size),
      });
      if (r.status !== 204) throw new Error(`chunk ${i}: ${r.status}`);
    }
    return performance.now() - t0;
  }, { b64: photo.toString("base64"), turn: w.turn });
  if (i > 0) {
    attachedAt.push(attached);
    app.push(took);
    baseline.push(plain);
    sizes.push(w);
  }
  await page.goto("/board");
  await page.waitForFunction(() => document.querySelector("[data-testid=last-synced]")?.textContent);
}
await browser.close();
const appMs = median(app);
const plainMs = median(baseline);
console.log(JSON.stringify({
  photo_bytes: photo.length,
  runs,
  upload_ms: appMs,
  upload_samples: app,
  attached_ms: median(attachedAt),
  attached_samples: attachedAt,
  baseline_ms: Math.round(plainMs),
  baseline_samples: baseline.map(Math.round),
  ratio: Math.round((appMs / plainMs) * 100) / 100,
  up_bytes: median(sizes.map((s) => s.up)),
  down_bytes: median(sizes.map((s) => s.down)),
  thumb_bytes: median(sizes.map((s) => s.thumbDown)),
  chunk_puts: median(sizes.map((s) => s.chunks)),
  finish_ms: Math.round(median(sizes.map((s) => s.finish))),
}));
