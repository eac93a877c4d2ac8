-- The pond forecast behind an alert of the overtopping rule (time to the dam
-- crest with its band, peak stage, storage left, method), as last evaluated.
ALTER TABLE alerts ADD COLUMN forecast jsonb;
