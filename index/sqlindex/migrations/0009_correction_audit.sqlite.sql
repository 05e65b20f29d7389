-- Corrections reach the audit trail through pacsd serve, whichever
-- process made them (pacsd correct, pacsd patient or the API), as the
-- removal log does. Corrections made before are taken as audited: the
-- API recorded its own.
ALTER TABLE correction ADD COLUMN audited INTEGER NOT NULL DEFAULT 0;
UPDATE correction SET audited = 1;
CREATE INDEX correction_unaudited ON correction (audited, id);
