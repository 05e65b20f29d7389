// dicom.js reads DICOM JSON (PS3.18 Annex F) as QIDO-RS returns it and
// formats values as a radiology list shows them.

// Tags of the attributes the pages read, by keyword.
export const tags = {
  SpecificCharacterSet: '00080005',
  ImageType: '00080008',
  SOPClassUID: '00080016',
  SOPInstanceUID: '00080018',
  StudyDate: '00080020',
  SeriesDate: '00080021',
  StudyTime: '00080030',
  AccessionNumber: '00080050',
  Modality: '00080060',
  ModalitiesInStudy: '00080061',
  InstitutionName: '00080080',
  ReferringPhysicianName: '00080090',
  StationName: '00081010',
  StudyDescription: '00081030',
  SeriesDescription: '0008103E',
  NameOfPhysiciansReadingStudy: '00081060',
  ManufacturerModelName: '00081090',
  Manufacturer: '00080070',
  RetrieveURL: '00081190',
  PatientName: '00100010',
  PatientID: '00100020',
  IssuerOfPatientID: '00100021',
  PatientBirthDate: '00100030',
  PatientSex: '00100040',
  OtherPatientIDs: '00101000',
  PatientAge: '00101010',
  BodyPartExamined: '00180015',
  ProtocolName: '00181030',
  StudyInstanceUID: '0020000D',
  SeriesInstanceUID: '0020000E',
  StudyID: '00200010',
  SeriesNumber: '00200011',
  InstanceNumber: '00200013',
  NumberOfStudyRelatedSeries: '00201206',
  NumberOfStudyRelatedInstances: '00201208',
  NumberOfSeriesRelatedInstances: '00201209',
  PhotometricInterpretation: '00280004',
  NumberOfFrames: '00280008',
  Rows: '00280010',
  Columns: '00280011',
  BitsAllocated: '00280100',
  BitsStored: '00280101',
  PixelRepresentation: '00280103',
  WindowCenter: '00281050',
  WindowWidth: '00281051',
  RescaleIntercept: '00281052',
  RescaleSlope: '00281053',
  SourceApplicationEntityTitle: '00020016',
};

// values returns the values of keyword in ds as strings (person names
// in their alphabetic form).
export function values(ds, keyword) {
  const el = ds?.[tags[keyword] ?? keyword];
  if (!el || !Array.isArray(el.Value)) return [];
  return el.Value.map((v) => {
    if (v && typeof v === 'object') return v.Alphabetic ?? v.Ideographic ?? v.Phonetic ?? '';
    return String(v);
  });
}

// value returns the first value of keyword in ds, or ''.
export function value(ds, keyword) {
  return values(ds, keyword)[0] ?? '';
}

export function number(ds, keyword) {
  const v = value(ds, keyword);
  if (v === '') return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

// personName formats a PN value as "FAMILY, Given Middle": the first
// caret becomes a comma, the others spaces, as lists usually show names.
export function personName(pn) {
  if (!pn) return '';
  const [family = '', given = '', middle = '', prefix = '', suffix = ''] = pn.split('^');
  const first = [prefix, given, middle].filter(Boolean).join(' ');
  let out = family;
  if (first) out += (out ? ', ' : '') + first;
  if (suffix) out += ` ${suffix}`;
  return out.trim();
}

// date formats a DA value (YYYYMMDD) as YYYY-MM-DD.
export function date(da) {
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(da ?? '');
  return m ? `${m[1]}-${m[2]}-${m[3]}` : (da ?? '');
}

// time formats a TM value as HH:MM.
export function time(tm) {
  const m = /^(\d{2})(\d{2})?/.exec(tm ?? '');
  if (!m) return '';
  return m[2] ? `${m[1]}:${m[2]}` : m[1];
}

// toDA turns a Date into YYYYMMDD, in local time.
export function toDA(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}`;
}

// isNHSNumber reports whether s is a valid NHS number: ten digits whose
// last is the modulus 11 check digit of the first nine.
export function isNHSNumber(s) {
  if (!/^\d{10}$/.test(s)) return false;
  let sum = 0;
  for (let i = 0; i < 9; i += 1) sum += Number(s[i]) * (10 - i);
  const check = 11 - (sum % 11);
  if (check === 10) return false;
  return (check === 11 ? 0 : check) === Number(s[9]);
}

// keywordOf returns the keyword of a tag the pages know, or the tag.
export function keywordOf(tag) {
  for (const [k, t] of Object.entries(tags)) if (t === tag) return k;
  return tag;
}

// display formats any element's values for the attribute table.
export function display(el) {
  if (!el) return '';
  if (el.vr === 'SQ') return `${el.Value?.length ?? 0} item(s)`;
  if (el.BulkDataURI || el.InlineBinary) return '(binary)';
  if (!Array.isArray(el.Value)) return '';
  return el.Value.map((v) => {
    if (v && typeof v === 'object') return personName(v.Alphabetic ?? '');
    if (el.vr === 'DA') return date(String(v));
    return String(v);
  }).join(' \\ ');
}
