-- The studies pacsd export read, which reach the audit trail through
-- pacsd serve, as corrections do: only serve writes the trail, and an
-- export may run while it does. A row is written as an export ends,
-- whether it succeeded or not; sop_classes counts its instances by SOP
-- Class UID, as a JSON object.
CREATE TABLE export_log (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	at INTEGER NOT NULL,
	principal TEXT NOT NULL,
	study TEXT NOT NULL,
	destination TEXT NOT NULL,
	sop_classes TEXT NOT NULL,
	instances INTEGER NOT NULL,
	deidentified INTEGER NOT NULL,
	failure TEXT NOT NULL,
	audited INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX export_log_unaudited ON export_log (audited, id);
