// viewer.js is the study page's quick viewer: one frame at a time,
// rendered by pacsd (WADO-RS …/frames/{n}/rendered), scrolled with the
// mouse wheel, the arrow keys or a slider, windowed with presets or by
// dragging. It is for a quick look; diagnostic reading belongs in a
// viewer such as OHIF.

import * as api from './api.js';
import { number, value } from './dicom.js';
import { h, id, replace } from './dom.js';

// Window presets (center, width) in Hounsfield units, for CT.
const ctPresets = [
  { name: 'Brain', c: 40, w: 80 },
  { name: 'Soft tissue', c: 40, w: 400 },
  { name: 'Lung', c: -600, w: 1500 },
  { name: 'Bone', c: 400, w: 1800 },
];

const cacheSize = 48;
const prefetch = 3;

export function createViewer(signal) {
  const helpID = id('viewer-help');
  const img = h('img', { alt: '', draggable: false });
  const topLeft = h('div', { class: 'overlay' });
  const topRight = h('div', { class: 'overlay right' });
  const stage = h('div', {
    class: 'stage',
    tabindex: 0,
    role: 'group',
    'aria-roledescription': 'image viewer',
    'aria-label': 'Image',
    'aria-describedby': helpID,
  }, img, topLeft, topRight);
  const slider = h('input', { type: 'range', min: 1, max: 1, value: 1, step: 1, id: id('frame') });
  const prev = h('button', { type: 'button', class: 'secondary', 'aria-label': 'Previous image' }, '◀');
  const next = h('button', { type: 'button', class: 'secondary', 'aria-label': 'Next image' }, '▶');
  const presetBar = h('div', { class: 'presets', role: 'group', 'aria-label': 'Window presets' });
  const windowText = h('span', { class: 'wl', 'aria-live': 'off' });
  const controls = h('div', { class: 'controls' },
    prev, h('label', { for: slider.id }, 'Image'), slider, next, presetBar, windowText);
  const help = h('p', { class: 'help', id: helpID },
    'Scroll with the mouse wheel, the arrow keys, Page Up and Page Down, Home and End. Drag to change the window: left and right for its width, up and down for its level. Keys 1 to 9 pick a preset, 0 the default.');
  const element = h('section', { class: 'viewer', 'aria-label': 'Quick viewer' }, stage, controls, help);

  let frames = []; // [{study, series, sop, frame, rows, columns}]
  let index = 0;
  let win = null; // {c, w} or null for the image's own window
  let base = { c: 128, w: 256 }; // the window drag starts from when none is set
  let presets = [];
  let seq = 0;
  let inflight = false;
  let dirty = false;
  let label = '';
  const cache = new Map(); // key → Promise<url>

  signal.addEventListener('abort', clear);

  function clear() {
    for (const p of cache.values()) p.then((u) => u && URL.revokeObjectURL(u)).catch(() => {});
    cache.clear();
  }

  function winParam(w) {
    return w ? `${Math.round(w.c)},${Math.max(1, Math.round(w.w))}` : '';
  }

  function urlOf(i, w) {
    const f = frames[i];
    const q = {};
    if (w) q.window = winParam(w);
    // Large images are scaled on the server to what the stage shows.
    const dpr = window.devicePixelRatio || 1;
    const vw = Math.round(stage.clientWidth * dpr);
    const vh = Math.round(stage.clientHeight * dpr);
    if (vw > 0 && vh > 0 && (f.columns > vw || f.rows > vh)) q.viewport = `${vw},${vh}`;
    const path = `/studies/${encodeURIComponent(f.study)}/series/${encodeURIComponent(f.series)}/instances/${encodeURIComponent(f.sop)}/frames/${f.frame}/rendered`;
    return api.dicomweb(path) + api.query(q);
  }

  function fetchFrame(i, w) {
    const url = urlOf(i, w);
    let p = cache.get(url);
    if (!p) {
      p = api.imageURL(url, signal);
      cache.set(url, p);
      p.catch(() => cache.delete(url));
      while (cache.size > cacheSize) {
        const [oldest, old] = cache.entries().next().value;
        cache.delete(oldest);
        old.then((u) => URL.revokeObjectURL(u)).catch(() => {});
      }
    } else {
      // Most recently used goes to the end.
      cache.delete(url);
      cache.set(url, p);
    }
    return p;
  }

  function updateText() {
    const n = frames.length;
    topLeft.textContent = n ? `${index + 1} / ${n}` : '';
    topRight.textContent = win ? `W ${Math.round(win.w)}  L ${Math.round(win.c)}` : 'Default window';
    windowText.textContent = win ? `Window ${Math.round(win.w)}, level ${Math.round(win.c)}` : 'Window: as stored';
    slider.value = String(index + 1);
    slider.setAttribute('aria-valuetext', `${index + 1} of ${n}`);
    stage.setAttribute('aria-label', n ? `${label}: image ${index + 1} of ${n}` : 'No images');
    for (const b of presetBar.querySelectorAll('button')) {
      const p = presets[Number(b.dataset.preset)];
      const on = p ? win && p.c === win.c && p.w === win.w : !win;
      b.setAttribute('aria-pressed', on ? 'true' : 'false');
    }
  }

  // show draws the current frame; while one request is in flight, later
  // changes only mark the view dirty, so that a fast scroll or drag asks
  // for the latest frame, not for each one it passed.
  async function show() {
    updateText();
    if (!frames.length) return;
    if (inflight) {
      dirty = true;
      return;
    }
    inflight = true;
    const my = ++seq;
    const i = index;
    const w = win;
    try {
      const url = await fetchFrame(i, w);
      if (my === seq && !signal.aborted) {
        img.src = url;
        img.alt = `${label}, image ${i + 1} of ${frames.length}`;
        element.dataset.shown = `${i + 1}`;
        element.dataset.window = winParam(w);
      }
    } catch (err) {
      if (err.name !== 'AbortError') {
        element.dataset.error = err.message;
        topRight.textContent = `Cannot show this image: ${err.message}`;
      }
    } finally {
      inflight = false;
    }
    if (dirty) {
      dirty = false;
      show();
      return;
    }
    for (let k = 1; k <= prefetch && i + k < frames.length; k += 1) fetchFrame(i + k, w).catch(() => {});
  }

  function go(i) {
    const n = Math.min(Math.max(0, i), frames.length - 1);
    if (n === index) return;
    index = n;
    show();
  }

  function setWindow(w) {
    win = w;
    show();
  }

  prev.addEventListener('click', () => go(index - 1));
  next.addEventListener('click', () => go(index + 1));
  slider.addEventListener('input', () => go(Number(slider.value) - 1));

  // A wheel notch moves one image. Trackpads send many small deltas,
  // which add up to a step.
  let wheel = 0;
  stage.addEventListener('wheel', (e) => {
    e.preventDefault();
    wheel += e.deltaMode === 1 ? e.deltaY * 50 : e.deltaY;
    if (Math.abs(wheel) >= 50) {
      go(index + Math.sign(wheel));
      wheel = 0;
    }
  }, { passive: false });

  stage.addEventListener('keydown', (e) => {
    const keys = {
      ArrowDown: () => go(index + 1),
      ArrowRight: () => go(index + 1),
      ArrowUp: () => go(index - 1),
      ArrowLeft: () => go(index - 1),
      PageDown: () => go(index + 10),
      PageUp: () => go(index - 10),
      Home: () => go(0),
      End: () => go(frames.length - 1),
      0: () => setWindow(null),
    };
    let act = keys[e.key];
    if (!act && /^[1-9]$/.test(e.key) && presets[Number(e.key) - 1]) {
      const p = presets[Number(e.key) - 1];
      act = () => setWindow({ c: p.c, w: p.w });
    }
    if (act) {
      e.preventDefault();
      act();
    }
  });

  let drag = null;
  stage.addEventListener('pointerdown', (e) => {
    if (e.button !== 0) return;
    stage.setPointerCapture(e.pointerId);
    stage.focus({ preventScroll: true });
    drag = { x: e.clientX, y: e.clientY, start: win ?? base };
  });
  stage.addEventListener('pointermove', (e) => {
    if (!drag) return;
    const scale = Math.max(drag.start.w, 2) / 256;
    const w = Math.max(1, drag.start.w + (e.clientX - drag.x) * scale);
    const c = drag.start.c + (e.clientY - drag.y) * scale;
    setWindow({ c, w });
  });
  const end = () => {
    drag = null;
  };
  stage.addEventListener('pointerup', end);
  stage.addEventListener('pointercancel', end);

  function renderPresets(colour) {
    const buttons = [h('button', { type: 'button', class: 'secondary', 'aria-pressed': 'true', onclick: () => setWindow(null) }, 'Default')];
    presets.forEach((p, i) => buttons.push(h('button', {
      type: 'button', class: 'secondary', dataset: { preset: String(i) }, 'aria-keyshortcuts': String(i + 1), onclick: () => setWindow({ c: p.c, w: p.w }),
    }, p.name)));
    replace(presetBar, colour ? h('span', { class: 'muted' }, 'Colour images are shown as stored') : buttons);
  }

  // load shows a series: instances are the QIDO-RS matches of its
  // instances, sorted here by Instance Number.
  async function load(study, series, instances, modality, name) {
    clear();
    label = name;
    frames = [];
    const sorted = [...instances].sort((a, b) => (number(a, 'InstanceNumber') ?? 0) - (number(b, 'InstanceNumber') ?? 0));
    for (const ds of sorted) {
      const n = number(ds, 'NumberOfFrames') ?? 1;
      for (let f = 1; f <= n; f += 1) {
        frames.push({ study, series, sop: value(ds, 'SOPInstanceUID'), frame: f, rows: number(ds, 'Rows') ?? 0, columns: number(ds, 'Columns') ?? 0 });
      }
    }
    index = 0;
    win = null;
    slider.max = String(Math.max(1, frames.length));
    slider.disabled = frames.length < 2;
    const colour = sorted.some((ds) => /^(RGB|YBR)/.test(value(ds, 'PhotometricInterpretation')));
    presets = modality === 'CT' && !colour ? ctPresets : [];
    renderPresets(colour);
    element.dataset.frames = String(frames.length);
    if (!frames.length) {
      img.removeAttribute('src');
      updateText();
      return;
    }
    base = await baseWindow(frames[0]).catch(() => base);
    show();
  }

  // baseWindow is the window a drag starts from when none is chosen: the
  // first window the image's metadata gives, else its full range.
  async function baseWindow(f) {
    const path = `/studies/${encodeURIComponent(f.study)}/series/${encodeURIComponent(f.series)}/instances/${encodeURIComponent(f.sop)}/metadata`;
    const [md] = await api.getJSON(api.dicomweb(path), { accept: 'application/dicom+json', signal });
    const c = number(md, 'WindowCenter');
    const w = number(md, 'WindowWidth');
    if (c !== null && w !== null && w > 0) return { c, w };
    const bits = number(md, 'BitsStored') ?? 8;
    const slope = number(md, 'RescaleSlope') ?? 1;
    const intercept = number(md, 'RescaleIntercept') ?? 0;
    const signed = number(md, 'PixelRepresentation') === 1;
    const range = 2 ** bits;
    const lo = signed ? -range / 2 : 0;
    return { c: (lo + range / 2) * slope + intercept, w: range * slope };
  }

  return { element, load };
}
