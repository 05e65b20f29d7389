// dicomweb-client.mjs drives pacsd with dicomweb-client, the DICOMweb
// library of the OHIF viewer, as a JavaScript application would, and
// prints what it got as one JSON object on standard output. It judges
// nothing: TestDicomwebClient compares the output with what it knows of
// the files it stored.
//
// Usage: node dicomweb-client.mjs PLAN.json
//
// The plan (written by the Go test) names the service root, the searches
// and the instances to fetch; see plan in dicomwebclient_test.go.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

import XMLHttpRequest from 'xhr2';
import dicomweb from 'dicomweb-client';

// dicomweb-client is written for browsers and makes every request with
// XMLHttpRequest, which node lacks; xhr2 implements it over node's http.
globalThis.XMLHttpRequest = XMLHttpRequest;

// Standard output carries the result alone: anything the library logs
// goes to standard error.
console.log = console.error;
console.info = console.error;
console.debug = console.error;

const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const client = new dicomweb.api.DICOMwebClient({ url: plan.url, verbose: false });

const sha256 = (buf) => createHash('sha256').update(new Uint8Array(buf)).digest('hex');
const value = (ds, tag) => ds?.[tag]?.Value?.[0];

// part10 describes a retrieved PS3.10 file: its length, and the SHA-256 of
// its data set, which is what an archive must keep as it was sent; the
// File Meta Information before it is the archive's own. The data set
// starts after the meta group, whose length (0002,0000) is the first
// element after the preamble and "DICM".
function part10(buf) {
  const b = new Uint8Array(buf);
  const magic = String.fromCharCode(...b.subarray(128, 132));
  const vr = String.fromCharCode(...b.subarray(136, 138));
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (magic !== 'DICM' || view.getUint32(132, true) !== 0x00000002 || vr !== 'UL') {
    return { length: b.byteLength, error: 'not a PS3.10 file starting with File Meta Information Group Length' };
  }
  const start = 144 + view.getUint32(140, true);
  return { length: b.byteLength, datasetSHA256: sha256(b.subarray(start)), contentType: buf.contentType ?? null };
}
const personName = (ds, tag) => value(ds, tag)?.Alphabetic;

// describe turns a failed request into something the Go test can print.
function describe(err) {
  if (err?.request) {
    return `HTTP ${err.status} ${err.request.statusText ?? ''}: ${String(err.response ?? '').slice(0, 300)}`;
  }
  return String(err?.stack ?? err);
}

// step runs one operation, recording its result or its error under name,
// so that one failure does not hide the others.
const out = {};
async function step(name, fn) {
  try {
    out[name] = await fn();
  } catch (err) {
    out[name] = { error: describe(err) };
  }
}

// Paged study search: PatientName wildcard, limit and offset, includefield.
await step('studyPages', async () => {
  const s = plan.studySearch;
  const pages = [];
  for (let offset = 0; pages.length < 20; offset += s.limit) {
    const studies = await client.searchForStudies({
      queryParams: { PatientName: s.patientName, limit: s.limit, offset, includefield: s.includefield.join(',') },
    });
    pages.push(studies.map((st) => {
      const fields = {};
      for (const t of s.includefield) fields[t] = value(st, t) ?? null;
      return {
        studyInstanceUID: value(st, '0020000D'),
        patientName: personName(st, '00100010'),
        retrieveURL: value(st, '00081190'),
        fields,
      };
    }));
    if (studies.length < s.limit) break;
  }
  return pages;
});

await step('series', async () => {
  const series = await client.searchForSeries({ studyInstanceUID: plan.series.studyInstanceUID });
  return series.map((se) => ({
    seriesInstanceUID: value(se, '0020000E'),
    modality: value(se, '00080060'),
    instances: value(se, '00201209'),
  }));
});

await step('instances', async () => {
  const instances = await client.searchForInstances({
    studyInstanceUID: plan.instances.studyInstanceUID,
    seriesInstanceUID: plan.instances.seriesInstanceUID,
  });
  return instances.map((i) => ({ sopInstanceUID: value(i, '00080018'), sopClassUID: value(i, '00080016') }));
});

await step('retrieveInstance', async () => part10(await client.retrieveInstance(plan.retrieve)));

await step('seriesMetadata', async () => {
  const md = await client.retrieveSeriesMetadata(plan.metadata);
  return md.map((m) => {
    const bulk = {};
    for (const [tag, el] of Object.entries(m)) {
      if (el.BulkDataURI) bulk[tag] = el.BulkDataURI;
    }
    return { sopInstanceUID: value(m, '00080018'), rows: value(m, '00280010'), bulkDataURIs: bulk };
  });
});

// Frames as OHIF's image loader asks for them: any transfer syntax.
async function frames(ref, mediaTypes) {
  const parts = await client.retrieveInstanceFrames({ ...ref, frameNumbers: [1], mediaTypes });
  return parts.map((p) => ({
    length: p.byteLength,
    sha256: sha256(p),
    contentType: p.contentType ?? null,
    transferSyntaxUID: p.transferSyntaxUID ?? null,
  }));
}

await step('nativeFrames', () =>
  frames(plan.nativeFrames, [{ mediaType: 'application/octet-stream', transferSyntaxUID: '1.2.840.10008.1.2.1' }]));

await step('jpegFrames', () =>
  frames(plan.jpegFrames, [{ mediaType: 'image/jpeg', transferSyntaxUID: '1.2.840.10008.1.2.4.50' }]));

// Native frames asked for compressed, which pacsd converts.
await step('jlsFrames', () =>
  frames(plan.nativeFrames, [{ mediaType: 'image/jls', transferSyntaxUID: '1.2.840.10008.1.2.4.80' }]));
await step('jp2Frames', () =>
  frames(plan.nativeFrames, [{ mediaType: 'image/jp2', transferSyntaxUID: '1.2.840.10008.1.2.4.90' }]));

// Bulk data of the first BulkDataURI that the instance's metadata gives
// for the attribute asked for, as OHIF fetches Pixel Data it cannot get
// as frames.
await step('bulkData', async () => {
  const b = plan.bulkData;
  const md = await client.retrieveInstanceMetadata(b);
  const uri = md[0]?.[b.tag]?.BulkDataURI;
  if (!uri) {
    return { error: `no BulkDataURI for ${b.tag} in the metadata: ${JSON.stringify(md[0]?.[b.tag])}` };
  }
  const parts = await client.retrieveBulkData({ BulkDataURI: uri });
  return { uri, parts: parts.map((p) => ({ length: p.byteLength, sha256: sha256(p) })) };
});

await step('store', async () => {
  const file = readFileSync(plan.store.path);
  const dataset = file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength);
  await client.storeInstances({ datasets: [dataset] });
  const found = await client.searchForInstances({
    queryParams: { SOPInstanceUID: plan.store.sopInstanceUID, includefield: 'PatientName' },
  });
  const matches = found.map((i) => ({
    studyInstanceUID: value(i, '0020000D'),
    seriesInstanceUID: value(i, '0020000E'),
    sopInstanceUID: value(i, '00080018'),
    patientName: personName(i, '00100010'),
  }));
  // What was stored comes back in the default syntax, Explicit VR Little
  // Endian (this client's retrieveInstance cannot ask for another).
  const retrieved = matches.length === 1 ? part10(await client.retrieveInstance(matches[0])) : null;
  return { matches, retrieved };
});

process.stdout.write(JSON.stringify(out, null, 2) + '\n');
