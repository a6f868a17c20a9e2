// Turns service worker: keeps the app shell (pages, wasm, JS, CSS) so a reload without network
// starts the app, which then renders from the device's local store. Network first: online, the
// server's page is always the one shown (and refreshes the cache). Data never goes through here:
// server functions and shapes are not cached. Page loads use navigation preload, so the request
// to the server does not wait for this worker to start.
const CACHE = "turns-shell-v1";

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
  if (/^\/(api|v1|auth|metrics)(\/|$)/.test(url.pathname)) return;
  const page = req.mode === "navigate";
  if (page && url.pathname === "/login") {
    // After a logout: no signed-in page of the previous user stays on the device.
    event.respondWith(
      caches.delete(CACHE).then(async () => (await event.preloadResponse) || fetch(req)),
    );
    return;
  }
  event.respondWith(networkFirst(event, page ? url.pathname : req));
});
