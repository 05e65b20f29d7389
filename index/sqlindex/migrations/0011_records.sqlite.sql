-- Records in storage (package archive, Journal): every deletion,
-- restore, correction and link by hand is written to storage before the
-- index makes it, so that an index rebuilt from storage makes it again.
-- applied_record names the records the index has applied, each once,
-- in the transaction that applies it; outcome says why one was not
-- ('' when it was).
CREATE TABLE applied_record (
	record_key TEXT PRIMARY KEY,
	applied_at INTEGER NOT NULL,
	outcome TEXT NOT NULL DEFAULT ''
);

-- The record each correction was made from, so that an undo's record
-- finds the correction it reverts in a rebuilt index, whose IDs may
-- differ.
ALTER TABLE correction ADD COLUMN record_key TEXT NOT NULL DEFAULT '';
CREATE INDEX correction_record ON correction (record_key);

-- Patients linked and unlinked by hand, for the audit trail: patients
-- is a JSON array of "ID^ISSUER".
CREATE TABLE link_event (
	id INTEGER PRIMARY KEY,
	action TEXT NOT NULL,
	patients TEXT NOT NULL,
	principal TEXT NOT NULL,
	at INTEGER NOT NULL,
	audited INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX link_event_audited ON link_event (audited, id);
