-- Deletion, rejection and retention. An instance deleted, rejected or
-- expired leaves the instance table at once, so that no query or
-- retrieval sees it, and its record moves to trash: the object stays in
-- storage until the trash is purged (purge = 1, after the trash days) or
-- for good (purge = 0, an instance hidden by a rejection note under the
-- policy "hide"). A row is keyed by its object, which it accounts for:
-- neither an orphan nor lost. purging marks the rows whose objects a
-- purge is deleting; a restore leaves them alone.
CREATE TABLE trash (
	object_key TEXT PRIMARY KEY,
	sop_instance_uid TEXT NOT NULL,
	study_instance_uid TEXT NOT NULL,
	series_instance_uid TEXT NOT NULL,
	sop_class_uid TEXT NOT NULL,
	size INTEGER NOT NULL,
	sha256 TEXT NOT NULL,
	transfer_syntax_uid TEXT NOT NULL,
	calling_ae TEXT NOT NULL,
	called_ae TEXT NOT NULL,
	source TEXT NOT NULL,
	principal TEXT NOT NULL,
	received_at INTEGER NOT NULL,
	removed_at INTEGER NOT NULL,
	cause TEXT NOT NULL,
	purge INTEGER NOT NULL,
	purging INTEGER NOT NULL DEFAULT 0,
	event_id INTEGER NOT NULL
) STRICT;

CREATE INDEX trash_study ON trash (study_instance_uid);
CREATE INDEX trash_sop ON trash (sop_instance_uid);
CREATE INDEX trash_due ON trash (purge, removed_at);

-- The instances named by a rejection note (IHE IOCM): whatever arrives
-- later under one of these UIDs is refused.
CREATE TABLE rejected (
	sop_instance_uid TEXT PRIMARY KEY,
	study_instance_uid TEXT NOT NULL,
	series_instance_uid TEXT NOT NULL,
	code TEXT NOT NULL,
	note_sop_instance_uid TEXT NOT NULL,
	rejected_at INTEGER NOT NULL
) STRICT;

-- What was deleted, restored, purged, rejected or expired, by whom and
-- why: one row per request, whichever process made it; pacsd serve
-- writes each to the audit trail.
CREATE TABLE removal_event (
	id INTEGER PRIMARY KEY,
	action TEXT NOT NULL,
	study_instance_uid TEXT NOT NULL,
	series_instance_uid TEXT NOT NULL,
	sop_instance_uid TEXT NOT NULL,
	instances INTEGER NOT NULL,
	reason TEXT NOT NULL,
	principal TEXT NOT NULL,
	at INTEGER NOT NULL,
	-- The patient of the study, as it was, for the audit trail.
	patient_id TEXT NOT NULL DEFAULT '',
	issuer_of_patient_id TEXT NOT NULL DEFAULT '',
	patient_name TEXT NOT NULL DEFAULT '',
	-- 1 once pacsd serve has written the entry to the audit trail.
	audited INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX removal_event_study ON removal_event (study_instance_uid);
CREATE INDEX removal_event_audited ON removal_event (audited, id);
