-- The storage placement ([storage.placements.<name>]) keeping the tenant's objects; NULL: the
-- main store. Set when the tenant is created and never changed.
ALTER TABLE tenants ADD COLUMN placement TEXT;
