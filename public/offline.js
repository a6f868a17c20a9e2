// Registers the service worker and keeps this page and the app's files for offline starts (not
// a password link's page: its URL is a credential).
if ("serviceWorker" in navigator && window.isSecureContext) {
  const page = location.pathname.startsWith("/password/") ? [] : [location.pathname];
  navigator.serviceWorker
    .register("/sw.js")
    .then(() => navigator.serviceWorker.ready)
    .then(() => caches.open("turns-shell-v1"))
    .then((cache) => cache.addAll(["/pkg/turns.js", "/pkg/turns.wasm", "/pkg/turns.css", "/offline.js", ...page]))
    .then(() => { document.documentElement.dataset.offline = "ready"; })
    .catch((e) => console.warn("offline start unavailable:", e));
}
