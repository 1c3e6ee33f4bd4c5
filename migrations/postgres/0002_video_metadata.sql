-- Key/value metadata from metadata-extractor plugins, as a JSON object.
ALTER TABLE videos ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
