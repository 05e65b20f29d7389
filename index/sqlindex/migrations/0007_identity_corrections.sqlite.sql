-- Patients across issuers and corrections (package index: Person,
-- Correction). Times are microseconds since 1970, UTC.
--
-- amended holds, as a DICOM JSON object, the attributes the archive
-- serves of an instance in place of its stored header's; '' for none.
ALTER TABLE instance ADD COLUMN amended TEXT NOT NULL DEFAULT '';

-- The person each local patient is, by its key rather than its row, so
-- that a link outlives the patient's rows: 'nhs:' and the NHS number
-- for patients linked by it, any other text for patients linked by
-- hand, '' for a patient unlinked by hand. manual rows are left alone
-- by automatic linking.
CREATE TABLE patient_person (
    patient_id TEXT    NOT NULL,
    issuer     TEXT    NOT NULL,
    person     TEXT    NOT NULL,
    nhs_number TEXT    NOT NULL DEFAULT '',
    manual     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (patient_id, issuer)
);
CREATE INDEX patient_person_person ON patient_person (person);

-- The corrections, in the order they were made. before and after are
-- DICOM JSON objects of the attributes changed.
CREATE TABLE correction (
    id        INTEGER PRIMARY KEY,
    study     TEXT    NOT NULL,
    series    TEXT    NOT NULL DEFAULT '',
    target    TEXT    NOT NULL DEFAULT '',
    reason    TEXT    NOT NULL,
    principal TEXT    NOT NULL DEFAULT '',
    at        INTEGER  NOT NULL,
    before    TEXT    NOT NULL,
    after     TEXT    NOT NULL,
    undoes    INTEGER  NOT NULL DEFAULT 0,
    undone_by INTEGER  NOT NULL DEFAULT 0
);
CREATE INDEX correction_study ON correction (study);
CREATE INDEX correction_target ON correction (target);
