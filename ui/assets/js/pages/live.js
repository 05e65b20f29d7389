// live.js holds what the pages that refresh themselves share: a loop that
// reloads every few seconds while the page is shown and the tab visible,
// and the "not available on this server" state of a missing endpoint.

import * as api from '../api.js';
import { h, notice, replace } from '../dom.js';

// every calls load now and then every ms until signal aborts, skipping
// turns while the tab is hidden. load gets whether it is the first call.
export function every(ms, signal, load) {
  let timer = 0;
  const tick = async (first) => {
    if (signal.aborted) return;
    if (first || document.visibilityState === 'visible') {
      try {
        await load(first);
      } catch (err) {
        if (err.name === 'AbortError' || err instanceof api.NotAvailableError) return; // stop: the page said why
      }
    }
    if (!signal.aborted) timer = setTimeout(() => tick(false), ms);
  };
  signal.addEventListener('abort', () => clearTimeout(timer));
  return tick(true);
}

// load fetches the JSON of a page's endpoint (a GET of path) into body's
// place: when the server lacks it, body says so; when it fails, body
// shows why. Either way it throws, which ends the page's refreshing for
// a missing endpoint and skips one turn for a failure.
export async function load(ctx, body, path, what) {
  try {
    return await api.getJSON(path, { optional: true, signal: ctx.signal });
  } catch (err) {
    if (err instanceof api.NotAvailableError) replace(body, unavailable(what, `GET ${path}`));
    else if (err.name !== 'AbortError') replace(body, notice('error', `${what} could not be read`, err.message));
    throw err;
  }
}

// unavailable is the state of a page whose endpoint the server lacks.
export function unavailable(what, endpoint) {
  return notice('unavailable', `${what} is not available on this server`,
    h('p', {}, `This pacsd does not answer ${endpoint}. The page works once a pacsd that offers it runs here (see docs/api.md).`));
}

// keepFocus redraws container with draw() and puts the focus back on the
// control that had it (matched by its data-key), so that a refresh does
// not throw a keyboard user back to the top.
export function keepFocus(container, draw) {
  const key = container.contains(document.activeElement) ? document.activeElement?.dataset?.key : null;
  replace(container, ...[draw()].flat());
  if (key) container.querySelector(`[data-key="${CSS.escape(key)}"]`)?.focus();
}

export function updated() {
  return h('p', { class: 'muted' }, `Updated ${new Date().toLocaleTimeString('en-GB')}; refreshes every few seconds.`);
}
