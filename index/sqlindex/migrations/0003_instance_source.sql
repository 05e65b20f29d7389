-- Who sent an instance, beyond its calling AE: the way it came in
-- ("dimse", "stow", ...) and the principal that signed in to send it.
-- The archive compares them with a resent instance's to decide whether
-- it may replace the one it holds (the duplicate policy
-- same-source-and-series). Instances recorded before this migration
-- came by DIMSE when they have a calling AE, and by STOW-RS otherwise,
-- the only two ways in there were.
ALTER TABLE instance ADD COLUMN source TEXT NOT NULL DEFAULT '';
ALTER TABLE instance ADD COLUMN principal TEXT NOT NULL DEFAULT '';
UPDATE instance SET source = CASE WHEN calling_ae <> '' THEN 'dimse' ELSE 'stow' END;
