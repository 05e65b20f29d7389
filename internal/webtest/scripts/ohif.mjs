// ohif.mjs opens the OHIF viewer in headless Chromium with Playwright, as
// a person would: the study list first, then each study in the viewer. It
// prints what it saw as one JSON object on standard output and judges
// nothing: TestOHIF compares it with the studies it stored in pacsd.
//
// Usage: node ohif.mjs PLAN.json
//
// The plan (written by the Go test) gives Chromium's path, the viewer's
// URL, pacsd's origin, the patient names the study list must show, the
// studies to open and where to save screenshots; see ohifPlan in
// ohif_test.go. Chromium is Debian's: Playwright downloads no browser.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { launch, loopbackOnly } from './browser.mjs';

console.log = console.error;

// OHIF's DisplaySetMessage.CODES (@ohif/core), to name the messages.
const displaySetMessageCodes = {
  NO_VALID_INSTANCES: 1,
  NO_POSITION_INFORMATION: 2,
  NOT_RECONSTRUCTABLE: 3,
  MULTIFRAME_NO_PIXEL_MEASUREMENTS: 4,
  MULTIFRAME_NO_ORIENTATION: 5,
  MULTIFRAME_NO_POSITION_INFORMATION: 6,
  MISSING_FRAMES: 7,
  IRREGULAR_SPACING: 8,
  INCONSISTENT_DIMENSIONS: 9,
  INCONSISTENT_COMPONENTS: 10,
  INCONSISTENT_ORIENTATIONS: 11,
  INCONSISTENT_POSITION_INFORMATION: 12,
  UNSUPPORTED_DISPLAYSET: 13,
  UNSUPPORTED_SOP_CLASS_UID: 14,
  MISSING_SOP_CLASS_UID: 15,
};

const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const deadline = (ms) => Date.now() + ms;

const out = {
  studyList: { visible: [], missing: [], screenshot: null },
  studies: [],
  pacsdRequests: [],
  failedRequests: [],
  errorResponses: [],
  blocked: [],
  consoleErrors: [],
  pageErrors: [],
};

const browser = await launch(plan.chromium);

try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await loopbackOnly(context, out.blocked);

  // The onboarding tour would cover the image in the screenshots.
  await context.addInitScript(() => localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour'])));

  const page = await context.newPage();
  const isPacsd = (url) => url.startsWith(plan.pacsdOrigin + '/');
  // Requests to pacsd under way, so that the script waits for them
  // before it moves on: a navigation would abort them.
  let inflight = 0;
  page.on('requestfinished', (req) => {
    if (isPacsd(req.url())) inflight--;
  });
  page.on('request', (req) => {
    if (isPacsd(req.url())) {
      inflight++;
      out.pacsdRequests.push({ method: req.method(), url: req.url(), accept: req.headers().accept ?? null });
    }
  });
  page.on('requestfailed', (req) => {
    if (isPacsd(req.url())) {
      inflight--;
      out.failedRequests.push({ method: req.method(), url: req.url(), failure: req.failure()?.errorText ?? null });
    }
  });
  page.on('response', async (resp) => {
    if (!isPacsd(resp.url())) return;
    const r = out.pacsdRequests.findLast((x) => x.url === resp.url() && x.status === undefined);
    if (r) {
      r.status = resp.status();
      r.contentType = resp.headers()['content-type'] ?? null;
    }
    if (resp.status() >= 400) {
      let body = null;
      try {
        body = (await resp.text()).slice(0, 500);
      } catch {
        // The body is gone when the page navigated away.
      }
      out.errorResponses.push({
        method: resp.request().method(),
        url: resp.url(),
        status: resp.status(),
        requestHeaders: resp.request().headers(),
        responseHeaders: resp.headers(),
        body,
      });
    }
  });
  page.on('console', (msg) => {
    if (msg.type() === 'error') out.consoleErrors.push(msg.text().slice(0, 500));
  });
  page.on('pageerror', (err) => out.pageErrors.push(String(err?.stack ?? err).slice(0, 1000)));

  // settle waits until no request to pacsd has been under way for a
  // moment, and reports whether that happened within ms.
  const settle = async (ms) => {
    const end = Date.now() + ms;
    let quietSince = Date.now();
    while (Date.now() < end) {
      if (inflight > 0) quietSince = Date.now();
      else if (Date.now() - quietSince >= 750) return true;
      await page.waitForTimeout(100);
    }
    return false;
  };

  // Cornerstone draws each viewport's image into a canvas of class
  // cornerstone-canvas. A canvas counts as showing an image when enough of
  // its pixels are not black and they take many levels: an empty viewport
  // is black, and a loading or error overlay is not drawn in the canvas.
  const canvases = () =>
    page.evaluate(() =>
      [...document.querySelectorAll('canvas.cornerstone-canvas')].map((c) => {
        const w = c.width;
        const h = c.height;
        if (!w || !h) return { width: w, height: h, nonBlack: 0, levels: 0 };
        const copy = document.createElement('canvas');
        copy.width = w;
        copy.height = h;
        const ctx = copy.getContext('2d');
        ctx.drawImage(c, 0, 0);
        const px = ctx.getImageData(0, 0, w, h).data;
        let nonBlack = 0;
        const levels = new Set();
        for (let i = 0; i < px.length; i += 4) {
          if (px[i] > 8 || px[i + 1] > 8 || px[i + 2] > 8) nonBlack++;
          levels.add(px[i] + px[i + 1] + px[i + 2]);
        }
        return { width: w, height: h, nonBlack: nonBlack / (w * h), levels: levels.size };
      }),
    );
  const showsImage = (cs) => cs.some((c) => c.nonBlack >= plan.minNonBlack && c.levels >= plan.minLevels);

  // The study list.
  const listStart = Date.now();
  await page.goto(plan.viewerURL + '/', { waitUntil: 'load' });
  const listDeadline = deadline(plan.timeoutMs);
  for (const name of plan.patientNames) {
    const loc = page.getByText(name, { exact: true }).first();
    try {
      await loc.waitFor({ state: 'visible', timeout: Math.max(1000, listDeadline - Date.now()) });
      out.studyList.visible.push(name);
    } catch {
      out.studyList.missing.push(name);
    }
  }
  out.studyList.ms = Date.now() - listStart;
  out.studyList.settled = await settle(plan.timeoutMs);
  out.studyList.screenshot = join(plan.screenshotDir, 'ohif-study-list.png');
  await page.screenshot({ path: out.studyList.screenshot });

  // Each study in the viewer.
  for (const st of plan.studies) {
    const res = {
      studyInstanceUID: st.studyInstanceUID,
      canvases: [],
      rendered: false,
      settled: false,
      viewportImages: 0,
      renderedAfterScroll: null,
      displaySets: [],
      screenshot: null,
      error: null,
    };
    out.studies.push(res);
    try {
      let url = `${plan.viewerURL}/viewer?StudyInstanceUIDs=${encodeURIComponent(st.studyInstanceUID)}`;
      if (st.initialSeriesInstanceUID) {
        url += `&initialSeriesInstanceUID=${encodeURIComponent(st.initialSeriesInstanceUID)}`;
      }
      await page.goto(url, { waitUntil: 'load' });
      const started = Date.now();
      const end = deadline(plan.timeoutMs);
      while (Date.now() < end) {
        res.canvases = await canvases();
        res.rendered = showsImage(res.canvases);
        if (res.rendered) break;
        await page.waitForTimeout(250);
      }
      res.renderMs = Date.now() - started;
      // Let the requests that the viewer started for the study finish,
      // so that their answers are checked too.
      res.settled = await settle(plan.timeoutMs);
      res.settledMs = Date.now() - started;
      // Scroll through the images of the first viewport's series, as a
      // reader does, so that the viewer fetches each of them.
      res.viewportImages = await page.evaluate(() => {
        const s = window.services;
        const vp = [...(s?.viewportGridService?.getState().viewports.values() ?? [])][0];
        const uid = vp?.displaySetInstanceUIDs?.[0];
        return (uid && s.displaySetService.getDisplaySetByUID(uid)?.images?.length) || 1;
      });
      if (res.rendered && res.viewportImages > 1) {
        await page.locator('.viewport-element').first().hover();
        for (let i = 1; i < res.viewportImages; i++) {
          await page.mouse.wheel(0, 120);
          await page.waitForTimeout(150);
        }
        res.settled = (await settle(plan.timeoutMs)) && res.settled;
        res.canvasesAfterScroll = await canvases();
        res.renderedAfterScroll = showsImage(res.canvasesAfterScroll);
      }
      // What the viewer made of the study: its display sets, and the
      // messages it shows on their thumbnails (a warning sign) about what
      // it found wrong or missing in their metadata.
      res.displaySets = await page.evaluate((codes) => {
        const names = Object.fromEntries(Object.entries(codes).map(([k, v]) => [v, k]));
        return (window.services?.displaySetService?.getActiveDisplaySets() ?? []).map((ds) => ({
          seriesInstanceUID: ds.SeriesInstanceUID,
          modality: ds.Modality,
          images: ds.images?.length ?? ds.instances?.length ?? 0,
          messages: (ds.messages?.messages ?? []).map((m) => names[m.id] ?? String(m.id)),
        }));
      }, displaySetMessageCodes);
      res.screenshot = join(plan.screenshotDir, `ohif-${st.name}.png`);
      await page.screenshot({ path: res.screenshot });
    } catch (err) {
      res.error = String(err?.stack ?? err);
    }
  }
} finally {
  await browser.close();
}

process.stdout.write(JSON.stringify(out, null, 2) + '\n');
