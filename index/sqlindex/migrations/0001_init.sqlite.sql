-- The first schema of the index: the four levels of the DICOM information
-- model (patient, study, series, instance), each holding the attributes
-- that C-FIND and QIDO-RS match on or return at that level, and the
-- aggregates the query models define (PS3.4 C.3.4).
--
-- Text attributes are kept as received, multiple values joined by
-- backslashes; an absent attribute is ''. PN, DA, TM and DT attributes
-- have a second column, <name>_norm, with the normalized form that
-- matching compares against: upper-case names, dates and times of fixed
-- width that compare as text in the order of the moments they stand for.
-- Sequences are DICOM JSON; the values of an attribute nested in a
-- sequence that queries match on are kept in a column of their own,
-- joined by backslashes. Times of the index's own
-- (attrs_received_at, received_at, indexed_at, updated_at) are
-- microseconds since 1970-01-01 UTC.
--
-- attrs_received_at is the ReceivedAt of the instance whose header the
-- row's attributes came from: an instance received earlier does not
-- overwrite them.

CREATE TABLE patient (
	pk INTEGER PRIMARY KEY,
	patient_id TEXT NOT NULL,
	issuer_of_patient_id TEXT NOT NULL,
	-- A patient whose instances carry no Patient ID is known only through
	-- its study: this is that study's UID, and empty for every patient
	-- with an ID, so that unidentified patients are never merged.
	unidentified_study TEXT NOT NULL DEFAULT '',
	patient_name TEXT NOT NULL DEFAULT '',
	patient_name_norm TEXT NOT NULL DEFAULT '',
	issuer_of_patient_id_qualifiers_sequence TEXT NOT NULL DEFAULT '',
	issuer_of_patient_id_universal_entity_id TEXT NOT NULL DEFAULT '',
	referenced_patient_sequence TEXT NOT NULL DEFAULT '',
	patient_birth_date TEXT NOT NULL DEFAULT '',
	patient_birth_date_norm TEXT NOT NULL DEFAULT '',
	patient_birth_time TEXT NOT NULL DEFAULT '',
	patient_birth_time_norm TEXT NOT NULL DEFAULT '',
	patient_sex TEXT NOT NULL DEFAULT '',
	other_patient_ids TEXT NOT NULL DEFAULT '',
	other_patient_ids_sequence TEXT NOT NULL DEFAULT '',
	other_patient_names TEXT NOT NULL DEFAULT '',
	other_patient_names_norm TEXT NOT NULL DEFAULT '',
	ethnic_group TEXT NOT NULL DEFAULT '',
	patient_comments TEXT NOT NULL DEFAULT '',
	patient_species_description TEXT NOT NULL DEFAULT '',
	patient_species_code_sequence TEXT NOT NULL DEFAULT '',
	patient_breed_description TEXT NOT NULL DEFAULT '',
	patient_breed_code_sequence TEXT NOT NULL DEFAULT '',
	breed_registration_sequence TEXT NOT NULL DEFAULT '',
	responsible_person TEXT NOT NULL DEFAULT '',
	responsible_person_norm TEXT NOT NULL DEFAULT '',
	responsible_person_role TEXT NOT NULL DEFAULT '',
	responsible_organization TEXT NOT NULL DEFAULT '',
	number_of_patient_related_studies INTEGER NOT NULL DEFAULT 0,
	number_of_patient_related_series INTEGER NOT NULL DEFAULT 0,
	number_of_patient_related_instances INTEGER NOT NULL DEFAULT 0,
	attrs_received_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	UNIQUE (patient_id, issuer_of_patient_id, unidentified_study)
) STRICT;

-- The keys that PN attributes are matched on (see index/names.go): each
-- value, each component group and each word of a name, as received
-- (raw, trimmed) and upper-cased (norm). One table per level, so that a
-- name matches through an index and deleting a row deletes its keys.
CREATE TABLE patient_name_key (
	patient_fk INTEGER NOT NULL REFERENCES patient (pk) ON DELETE CASCADE,
	tag INTEGER NOT NULL,
	part INTEGER NOT NULL,
	norm TEXT NOT NULL,
	raw TEXT NOT NULL
) STRICT;

CREATE INDEX patient_name_key_norm ON patient_name_key (tag, norm);
CREATE INDEX patient_name_key_patient_fk ON patient_name_key (patient_fk);

CREATE TABLE study (
	pk INTEGER PRIMARY KEY,
	patient_fk INTEGER NOT NULL REFERENCES patient (pk),
	study_instance_uid TEXT NOT NULL UNIQUE
		CHECK (study_instance_uid <> '' AND length(study_instance_uid) <= 64),
	study_date TEXT NOT NULL DEFAULT '',
	study_date_norm TEXT NOT NULL DEFAULT '',
	study_time TEXT NOT NULL DEFAULT '',
	study_time_norm TEXT NOT NULL DEFAULT '',
	accession_number TEXT NOT NULL DEFAULT '',
	issuer_of_accession_number_sequence TEXT NOT NULL DEFAULT '',
	issuer_of_accession_number_local_namespace_entity_id TEXT NOT NULL DEFAULT '',
	study_id TEXT NOT NULL DEFAULT '',
	referring_physician_name TEXT NOT NULL DEFAULT '',
	referring_physician_name_norm TEXT NOT NULL DEFAULT '',
	study_description TEXT NOT NULL DEFAULT '',
	procedure_code_sequence TEXT NOT NULL DEFAULT '',
	procedure_code_value TEXT NOT NULL DEFAULT '',
	name_of_physicians_reading_study TEXT NOT NULL DEFAULT '',
	name_of_physicians_reading_study_norm TEXT NOT NULL DEFAULT '',
	admitting_diagnoses_description TEXT NOT NULL DEFAULT '',
	referenced_study_sequence TEXT NOT NULL DEFAULT '',
	patient_age TEXT NOT NULL DEFAULT '',
	patient_size TEXT NOT NULL DEFAULT '',
	patient_weight TEXT NOT NULL DEFAULT '',
	occupation TEXT NOT NULL DEFAULT '',
	additional_patient_history TEXT NOT NULL DEFAULT '',
	timezone_offset_from_utc TEXT NOT NULL DEFAULT '',
	modalities_in_study TEXT NOT NULL DEFAULT '',
	sop_classes_in_study TEXT NOT NULL DEFAULT '',
	number_of_study_related_series INTEGER NOT NULL DEFAULT 0,
	number_of_study_related_instances INTEGER NOT NULL DEFAULT 0,
	attrs_received_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL
) STRICT;

CREATE INDEX study_patient_fk ON study (patient_fk);
CREATE INDEX study_study_date ON study (study_date_norm, study_time_norm);
CREATE INDEX study_accession_number ON study (accession_number);
CREATE INDEX study_study_id ON study (study_id);

CREATE TABLE study_name_key (
	study_fk INTEGER NOT NULL REFERENCES study (pk) ON DELETE CASCADE,
	tag INTEGER NOT NULL,
	part INTEGER NOT NULL,
	norm TEXT NOT NULL,
	raw TEXT NOT NULL
) STRICT;

CREATE INDEX study_name_key_norm ON study_name_key (tag, norm);
CREATE INDEX study_name_key_study_fk ON study_name_key (study_fk);

CREATE TABLE series (
	pk INTEGER PRIMARY KEY,
	study_fk INTEGER NOT NULL REFERENCES study (pk),
	series_instance_uid TEXT NOT NULL UNIQUE
		CHECK (series_instance_uid <> '' AND length(series_instance_uid) <= 64),
	modality TEXT NOT NULL DEFAULT '',
	series_number INTEGER,
	series_description TEXT NOT NULL DEFAULT '',
	series_date TEXT NOT NULL DEFAULT '',
	series_date_norm TEXT NOT NULL DEFAULT '',
	series_time TEXT NOT NULL DEFAULT '',
	series_time_norm TEXT NOT NULL DEFAULT '',
	body_part_examined TEXT NOT NULL DEFAULT '',
	laterality TEXT NOT NULL DEFAULT '',
	performed_procedure_step_start_date TEXT NOT NULL DEFAULT '',
	performed_procedure_step_start_date_norm TEXT NOT NULL DEFAULT '',
	performed_procedure_step_start_time TEXT NOT NULL DEFAULT '',
	performed_procedure_step_start_time_norm TEXT NOT NULL DEFAULT '',
	performed_procedure_step_id TEXT NOT NULL DEFAULT '',
	performed_procedure_step_description TEXT NOT NULL DEFAULT '',
	request_attributes_sequence TEXT NOT NULL DEFAULT '',
	scheduled_procedure_step_id TEXT NOT NULL DEFAULT '',
	requested_procedure_id TEXT NOT NULL DEFAULT '',
	institution_name TEXT NOT NULL DEFAULT '',
	institutional_department_name TEXT NOT NULL DEFAULT '',
	station_name TEXT NOT NULL DEFAULT '',
	performing_physician_name TEXT NOT NULL DEFAULT '',
	performing_physician_name_norm TEXT NOT NULL DEFAULT '',
	operators_name TEXT NOT NULL DEFAULT '',
	operators_name_norm TEXT NOT NULL DEFAULT '',
	manufacturer TEXT NOT NULL DEFAULT '',
	manufacturer_model_name TEXT NOT NULL DEFAULT '',
	protocol_name TEXT NOT NULL DEFAULT '',
	timezone_offset_from_utc TEXT NOT NULL DEFAULT '',
	number_of_series_related_instances INTEGER NOT NULL DEFAULT 0,
	attrs_received_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL
) STRICT;

CREATE INDEX series_study_fk ON series (study_fk);
CREATE INDEX series_modality ON series (modality);

CREATE TABLE series_name_key (
	series_fk INTEGER NOT NULL REFERENCES series (pk) ON DELETE CASCADE,
	tag INTEGER NOT NULL,
	part INTEGER NOT NULL,
	norm TEXT NOT NULL,
	raw TEXT NOT NULL
) STRICT;

CREATE INDEX series_name_key_norm ON series_name_key (tag, norm);
CREATE INDEX series_name_key_series_fk ON series_name_key (series_fk);

-- How many instances of each SOP class a series holds: kept up to date
-- by every put and delete, so that SOP Classes in Study is exact without
-- scanning the study's instances.
CREATE TABLE series_sop_class (
	series_fk INTEGER NOT NULL REFERENCES series (pk) ON DELETE CASCADE,
	sop_class_uid TEXT NOT NULL,
	number_of_instances INTEGER NOT NULL CHECK (number_of_instances >= 0),
	PRIMARY KEY (series_fk, sop_class_uid)
) STRICT, WITHOUT ROWID;

CREATE TABLE instance (
	pk INTEGER PRIMARY KEY,
	series_fk INTEGER NOT NULL REFERENCES series (pk),
	sop_instance_uid TEXT NOT NULL UNIQUE
		CHECK (sop_instance_uid <> '' AND length(sop_instance_uid) <= 64),
	sop_class_uid TEXT NOT NULL,
	-- The parents' UIDs as the instance named them: they can differ from
	-- the hierarchy when a later instance moved its series or study.
	study_instance_uid TEXT NOT NULL,
	series_instance_uid TEXT NOT NULL,
	object_key TEXT NOT NULL,
	size INTEGER NOT NULL,
	sha256 TEXT NOT NULL,
	transfer_syntax_uid TEXT NOT NULL,
	calling_ae TEXT NOT NULL,
	called_ae TEXT NOT NULL,
	received_at INTEGER NOT NULL,
	indexed_at INTEGER NOT NULL,
	instance_number INTEGER,
	content_date TEXT NOT NULL DEFAULT '',
	content_date_norm TEXT NOT NULL DEFAULT '',
	content_time TEXT NOT NULL DEFAULT '',
	content_time_norm TEXT NOT NULL DEFAULT '',
	acquisition_date_time TEXT NOT NULL DEFAULT '',
	acquisition_date_time_norm TEXT NOT NULL DEFAULT '',
	rows INTEGER,
	columns INTEGER,
	bits_allocated INTEGER,
	number_of_frames INTEGER,
	photometric_interpretation TEXT NOT NULL DEFAULT '',
	image_type TEXT NOT NULL DEFAULT '',
	content_label TEXT NOT NULL DEFAULT '',
	content_description TEXT NOT NULL DEFAULT '',
	completion_flag TEXT NOT NULL DEFAULT '',
	verification_flag TEXT NOT NULL DEFAULT '',
	concept_name_code_sequence TEXT NOT NULL DEFAULT '',
	concept_name_code_value TEXT NOT NULL DEFAULT '',
	content_template_sequence TEXT NOT NULL DEFAULT '',
	observation_date_time TEXT NOT NULL DEFAULT '',
	observation_date_time_norm TEXT NOT NULL DEFAULT '',
	timezone_offset_from_utc TEXT NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX instance_series_fk ON instance (series_fk);
