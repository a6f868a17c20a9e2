// Turns service worker: keeps the app shell (pages, wasm, JS, CSS) so a reload without network
// starts the app, which then renders from the device's local store. Network first: online, the
// server's page is always the one shown (and refreshes the cache). Data never goes through here:
// server functions and shapes are not cached. Page loads use navigation preload, so the request
// to the server does not wait for this worker to start.
const CACHE = "turns-shell-v1";
// Photo thumbnails the user has seen, for a drawer opened with no signal. A thumbnail never
// changes under its URL, so the kept one is served first. Cleared with the shell (a logout, or
// the login page: whoever signs in next never gets the previous user's photos from here).
const THUMBS = "turns-thumbs-v1";
const THUMB = /^\/api\/photos\/[0-9a-f-]{36}\/thumb$/;

async function keptThumb(event) {
  const cache = await caches.open(THUMBS);
  const hit = await cache.match(event.request);
  if (hit) return hit;
  const res = await fetch(event.request);
  if (res.ok && res.type === "basic") {
    const copy = res.clone();
    event.waitUntil(cache.put(event.request, copy));
  }
  return res;
}

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) =>
  event.waitUntil(
    Promise.all([self.clients.claim(), self.registration.navigationPreload?.enable()]),
  ),
);

async function networkFirst(event, key) {
  try {
    const res = (await event.preloadResponse) || (await fetch(event.request));
    if (res.ok && !res.redirected && res.type === "basic") {
      const copy = res.clone();
      event.waitUntil(caches.open(CACHE).then((c) => c.put(key, copy)));
    }
    return res;
  } catch {
    const hit = await caches.match(key, { ignoreSearch: event.request.mode === "navigate" });
    return hit || Response.error();
  }
}

self.addEventListener("fetch", (event) => {
  const req = event.request;
  const url = new URL(req.url);
  if (req.method !== "GET" || url.origin !== self.location.origin) return;
  if (THUMB.test(url.pathname)) {
    event.respondWith(keptThumb(event));
    return;
  }
  // Not kept: answers that change per request, and a password link's page (its URL is a
  // credential, its body an email; it must not outlive its use in Cache Storage).
  if (/^\/(api|v1|auth|metrics|password)(\/|$)/.test(url.pathname)) return;
  const page = req.mode === "navigate";
  if (page && url.pathname === "/login") {
    // After a logout: no signed-in page of the previous user stays on the device.
    event.respondWith(
      Promise.all([caches.delete(CACHE), caches.delete(THUMBS)]).then(
        async () => (await event.preloadResponse) || fetch(req),
      ),
    );
    return;
  }
  // A turn's URL is the board with that turn's panel open (opened after hydration): one page,
  // kept once, so a turn opened offline or reloaded there still starts.
  const key = page ? (url.pathname.startsWith("/turns/") ? "/board" : url.pathname) : req;
  event.respondWith(networkFirst(event, key));
});
