-- The latest record of each audit journal (see audit.HeadStore): its
-- sequence number and SHA-256, saved after each batch of records is
-- synced, so that removing the last records of a journal, which no later
-- record's hash would reveal, is detected too. Each node writes a journal
-- of its own, named by its host and directory.
CREATE TABLE audit_head (
	journal TEXT PRIMARY KEY,
	seq BIGINT NOT NULL,
	hash TEXT NOT NULL,
	updated_at BIGINT NOT NULL
);

-- The replacements made by de-identification (see deid.MappingStore):
-- a pseudonymous UID or patient ID, and the original it replaced, so
-- that an admin can re-identify a de-identified instance. The same
-- original always gives the same replacement under one project key; a
-- replacement is recorded once.
CREATE TABLE deid_mapping (
	kind TEXT NOT NULL,
	replacement TEXT NOT NULL,
	original TEXT NOT NULL,
	recorded_at BIGINT NOT NULL,
	PRIMARY KEY (kind, replacement)
);
