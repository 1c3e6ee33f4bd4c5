-- Transcoding progress of a video being processed, as JSON {"percent", "speed"}.
ALTER TABLE videos ADD COLUMN progress TEXT;
