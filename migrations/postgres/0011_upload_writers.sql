-- The generation of an upload's writers: every writer that takes the upload's lock (in this
-- row or in Redis) adds one and keeps the number it got. Offset moves go through only while
-- the row still holds the writer's number, so a writer that lost its lease and was taken over
-- changes nothing; and pieces kept in object storage carry it in their names, so a late write
-- by such a writer can never replace its successor's piece.
ALTER TABLE uploads ADD COLUMN writer BIGINT NOT NULL DEFAULT 0;
