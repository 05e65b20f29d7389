-- Archive compression (package recompress). instance_original describes
-- the object an instance was received as, for an instance whose object
-- the archive re-encoded losslessly: it holds for the object named by
-- object_key only, so that a later version of the instance, or a row
-- left by one removed, describes nothing. The re-encoded object carries
-- the same description, from which reindex restores it.
CREATE TABLE instance_original (
	object_key TEXT PRIMARY KEY,
	sop_instance_uid TEXT NOT NULL,
	sha256 TEXT NOT NULL,
	transfer_syntax_uid TEXT NOT NULL,
	size BIGINT NOT NULL,
	compressed_at BIGINT NOT NULL
);
CREATE INDEX instance_original_sop ON instance_original (sop_instance_uid);

-- compress_claim is the work of compression on one version of an
-- instance: claimed by a node until lease_until (a node that dies lets
-- its lease run out, and another takes the instance), to be retried
-- after lease_until once released, or skipped for good, with the
-- reason, for that version.
CREATE TABLE compress_claim (
	sop_instance_uid TEXT PRIMARY KEY,
	object_key TEXT NOT NULL,
	state TEXT NOT NULL,
	reason TEXT NOT NULL,
	owner TEXT NOT NULL,
	lease_until BIGINT NOT NULL,
	updated_at BIGINT NOT NULL
);

-- Candidates are found by age among the instances stored uncompressed
-- (Implicit and Explicit VR Little Endian), which compression takes.
CREATE INDEX instance_uncompressed_received ON instance (received_at)
	WHERE transfer_syntax_uid IN ('1.2.840.10008.1.2', '1.2.840.10008.1.2.1');
