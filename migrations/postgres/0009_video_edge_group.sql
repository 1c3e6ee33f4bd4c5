-- The edge group the router plugin chose for the video: deleting the video purges that group's
-- edges.
ALTER TABLE videos ADD COLUMN edge_group TEXT NOT NULL DEFAULT 'default';
