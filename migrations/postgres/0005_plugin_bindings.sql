-- Plugin bindings (host/core/src/plugin.rs): one row per scope and world, holding that world's
-- ordered chain as a JSON list of bindings. Global rows come from the config file at start-up
-- (all four worlds when `[plugins.bindings]` is set, none when it is not, which means "every
-- loaded plugin"); tenant rows from the config file and `PUT /v1/tenants/{tenant}/bindings`.
CREATE TABLE global_plugin_bindings (
    world      TEXT PRIMARY KEY,
    chain      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE tenant_plugin_bindings (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    world      TEXT NOT NULL,
    chain      TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, world)
);
