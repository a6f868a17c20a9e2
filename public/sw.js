// Turns service worker: keeps the app shell (pages, wasm, JS, CSS) so a reload without network
// starts the app, which then renders from the device's local store. Network first: online, the
// server's page is always the one shown (and refreshes the cache). Data never goes through here:
// server functions and shapes are not cached.
const CACHE = "turns-shell-v1";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("fetch", (event) => {
  const req = event.request;
  const url = new URL(req.url);
  if (req.method !== "GET" || url.origin !== self.location.origin) return;
  if (/^\/(api|v1|auth|metrics)(\/|$)/.test(url.pathname)) return;
  const page = req.mode === "navigate";
  if (page && url.pathname === "/login") {
    // After a logout: no signed-in page of the previous user stays on the device.
    event.respondWith(caches.delete(CACHE).then(() => fetch(req)));
    return;
  }
  event.respondWith(
    fetch(req)
      .then((res) => {
        if (res.ok && !res.redirected && res.type === "basic") {
          const copy = res.clone();
          const key = page ? url.pathname : req;
          event.waitUntil(caches.open(CACHE).then((c) => c.put(key, copy)));
        }
        return res;
      })
      .catch(async () => {
        const hit = await caches.match(page ? url.pathname : req, { ignoreSearch: page });
        return hit || Response.error();
      }),
  );
});
