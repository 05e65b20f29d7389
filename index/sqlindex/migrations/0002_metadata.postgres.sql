-- The metadata document of each instance that DICOMweb serves (its header
-- as DICOM JSON, and where its frames lie in the object), computed once at
-- ingest so that the metadata of a large series is not read back from
-- every object. It is a cache: an instance without one has it computed
-- from its object when asked. A table of its own keeps the instance rows,
-- which queries scan, small.
CREATE TABLE instance_metadata (
	instance_fk BIGINT PRIMARY KEY REFERENCES instance (pk) ON DELETE CASCADE,
	document BYTEA NOT NULL
);
