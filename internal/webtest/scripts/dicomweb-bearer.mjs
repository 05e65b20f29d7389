// dicomweb-bearer.mjs searches pacsd's studies with dicomweb-client, as a
// JavaScript application signed in with a bearer token would, once with
// the token and once without, and prints what each got as one JSON
// object. TestDicomwebClientBearer judges it.
//
// Usage: node dicomweb-bearer.mjs PLAN.json
//
// The plan names the service root (url) and the token (token).
import { readFileSync } from 'node:fs';

import XMLHttpRequest from 'xhr2';
import dicomweb from 'dicomweb-client';

globalThis.XMLHttpRequest = XMLHttpRequest;
console.log = console.error;
console.info = console.error;
console.debug = console.error;

const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));

// search returns the Study Instance UIDs found, or the HTTP status of the
// refusal.
async function search(headers) {
  const client = new dicomweb.api.DICOMwebClient({ url: plan.url, headers, verbose: false });
  try {
    const studies = await client.searchForStudies({ queryParams: { PatientID: plan.patientID } });
    return { studies: studies.map((s) => s['0020000D']?.Value?.[0]) };
  } catch (err) {
    return { status: err?.status ?? null, error: String(err?.message ?? err) };
  }
}

const out = {
  withToken: await search({ Authorization: `Bearer ${plan.token}` }),
  withoutToken: await search({}),
};
process.stdout.write(JSON.stringify(out) + '\n');
