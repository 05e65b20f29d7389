-- amended_at is when an instance's amendment took the values it holds:
-- the time of the latest correction that wrote it, in microseconds since
-- the epoch; 0 when it is not known, for an amendment given at ingest
-- (an issuer), whose time is received_at. The archive writes it in the
-- Original Attributes Sequence it serves, so that the same correction is
-- served the same, byte for byte, whenever and wherever it is. Amendments
-- made before take the time of the latest correction of their study or
-- series.
ALTER TABLE instance ADD COLUMN amended_at INTEGER NOT NULL DEFAULT 0;
UPDATE instance SET amended_at = COALESCE((SELECT MAX(c.at) FROM correction c
	WHERE c.study = instance.study_instance_uid OR c.target = instance.study_instance_uid
		OR c.series <> '' AND c.series = instance.series_instance_uid), 0)
WHERE amended <> '';
