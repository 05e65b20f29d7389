-- The state of migrations from other archives and of imports from files
-- (package migrate): one row per migration, one per study it found, and
-- one per file an import read. A crash, a restart or another machine on
-- the same database goes on from these rows. Lists are read in the
-- order of the database's collation, and paged by the same.
CREATE TABLE migration (
	pk INTEGER PRIMARY KEY,
	-- The remote AE title or DICOMweb URL, or "import".
	source TEXT NOT NULL UNIQUE,
	kind TEXT NOT NULL,
	started_at INTEGER NOT NULL,
	-- The process running the migration ("host:pid"), and when it
	-- last said it was alive; running, waiting and finished are 0 or 1.
	owner TEXT NOT NULL DEFAULT '',
	running INTEGER NOT NULL DEFAULT 0,
	heartbeat_at INTEGER NOT NULL DEFAULT 0,
	waiting INTEGER NOT NULL DEFAULT 0,
	finished INTEGER NOT NULL DEFAULT 0,
	time_window TEXT NOT NULL DEFAULT ''
) STRICT;

CREATE TABLE migration_study (
	migration_fk INTEGER NOT NULL REFERENCES migration (pk) ON DELETE CASCADE,
	study_instance_uid TEXT NOT NULL,
	patient_id TEXT NOT NULL,
	issuer_of_patient_id TEXT NOT NULL,
	patient_name TEXT NOT NULL,
	patient_birth_date TEXT NOT NULL,
	study_date TEXT NOT NULL,
	study_time TEXT NOT NULL,
	accession_number TEXT NOT NULL,
	modalities TEXT NOT NULL,
	instances_source INTEGER NOT NULL,
	instances_here INTEGER NOT NULL,
	bytes INTEGER NOT NULL,
	state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'verified', 'failed', 'conflict')),
	attempts INTEGER NOT NULL,
	last_error TEXT NOT NULL,
	priority INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	PRIMARY KEY (migration_fk, study_instance_uid)
) STRICT;
CREATE INDEX migration_study_patient ON migration_study (migration_fk, patient_id, issuer_of_patient_id);
CREATE INDEX migration_study_state ON migration_study (migration_fk, state, updated_at);

CREATE TABLE migration_file (
	migration_fk INTEGER NOT NULL REFERENCES migration (pk) ON DELETE CASCADE,
	path TEXT NOT NULL,
	size INTEGER NOT NULL,
	mod_time INTEGER NOT NULL,
	sop_instance_uid TEXT NOT NULL,
	study_instance_uid TEXT NOT NULL,
	sha256 TEXT NOT NULL,
	state TEXT NOT NULL CHECK (state IN ('verified', 'rejected', 'failed', 'conflict')),
	reason TEXT NOT NULL,
	PRIMARY KEY (migration_fk, path)
) STRICT;
CREATE INDEX migration_file_state ON migration_file (migration_fk, state);
