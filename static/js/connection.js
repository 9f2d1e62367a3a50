// What every page's WebSocket does alike (chat, rooms, voice): the close codes,
// a heartbeat that notices a dead socket, and reconnecting with backoff.
//
// Each page keeps its connection in a `state` object with `socket`, `attempt`
// and `timers` ({retry, countdown, ping, pong, ...}); these functions work on it.

export const CLOSE_UNAUTHENTICATED = 4401;
export const CLOSE_FORBIDDEN = 4403;
export const CLOSE_TOO_MANY_FRAMES = 4429;

const RECONNECT_BASE_MS = 500;
const RECONNECT_MAX_MS = 10_000;
const PING_INTERVAL_MS = 25_000;
const PONG_TIMEOUT_MS = 10_000;
const CONNECTION_TIMERS = ["retry", "countdown", "ping", "pong"];

/** The ws:// or wss:// URL of `path` on this page's host. */
export function socketUrl(path) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}${path}`;
}

export function clearConnectionTimers(state) {
  for (const name of CONNECTION_TIMERS) {
    clearTimeout(state.timers[name]);
    clearInterval(state.timers[name]);
  }
}

/** Ping every 25 s; no `pong` within 10 s and `dropSocket` gives the socket up. */
export function startHeartbeat(state, sendFrame, dropSocket) {
  state.timers.ping = setInterval(() => {
    if (!sendFrame({ type: "ping" })) return;
    clearTimeout(state.timers.pong);
    state.timers.pong = setTimeout(dropSocket, PONG_TIMEOUT_MS);
  }, PING_INTERVAL_MS);
}

export function pongReceived(state) {
  clearTimeout(state.timers.pong);
}

/** Call `connect` after an exponential backoff, counting down in `setConnection`. */
export function scheduleReconnect(state, setConnection, connect) {
  if (!navigator.onLine) {
    setConnection("offline");
    return; // the `online` event reconnects
  }
  // Exponential backoff with "equal jitter": half fixed, half random.
  const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** state.attempt);
  const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  state.attempt += 1;
  const due = Date.now() + delay;
  const tick = () => {
    const seconds = Math.max(1, Math.ceil((due - Date.now()) / 1000));
    setConnection("reconnecting", `Reconnecting in ${seconds}s`);
  };
  tick();
  state.timers.countdown = setInterval(tick, 250);
  state.timers.retry = setTimeout(connect, delay);
}
