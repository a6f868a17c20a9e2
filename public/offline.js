// Registers the service worker and keeps this page and the app's files for offline starts.
if ("serviceWorker" in navigator && window.isSecureContext) {
  navigator.serviceWorker
    .register("/sw.js")
    .then(() => navigator.serviceWorker.ready)
    .then(() => caches.open("turns-shell-v1"))
    .then((cache) => cache.addAll(["/pkg/turns.js", "/pkg/turns.wasm", "/pkg/turns.css", "/offline.js", location.pathname]))
    .then(() => { document.documentElement.dataset.offline = "ready"; })
    .catch((e) => console.warn("offline start unavailable:", e));
}
