"""The Outreach sync server: a blind store of sealed ops and wrapped keys, per `sync/PROTOCOL.md`.

Public surface: `create_app(settings)` and `ServerSettings`, plus `Database`/`migrate` for tools and
tests, `ApiError`, and `ServerKey`/`load_server_key` (the server's own key, for tools that create
teams). Where things are:

    app          create_app: wiring only (settings, database, middleware, error answers, routers)
    routes/      the routes, one module per area (health, enrol, devices, log, roster, purge,
                 checkpoints) and `base` (the server context, authentication, the protocol header)
    crud/        every read and write of the database, one module per area, the same areas
    tables       the schema classes; db: engines, transactions, the named migrations
    config       ServerSettings; keys: the server key (keyed lookups, the sealed founding secret)
    middleware   the protocol/size/gzip gate before any route; errors: ApiError and its status
    wake         long-polls woken in this process, and on PostgreSQL by LISTEN/NOTIFY from others
    continuity   whether a device and the log still agree after a restore (warnings for the operator)
    cli          `outreach-server` (also `python -m sync.server`)

The server imports only `sync.protocol` from the rest of the project: never `models`, `app`,
`sync.client` or `sync.engine`, never `cryptography`, a team key or the vault, and it never logs a
payload.
"""

from sync.server.app import create_app
from sync.server.config import ServerSettings
from sync.server.db import Database, MigrationError, migrate
from sync.server.errors import ApiError
from sync.server.keys import ServerKey, load_server_key

__all__ = ["ApiError", "Database", "MigrationError", "ServerKey", "ServerSettings", "create_app", "load_server_key",
           "migrate"]
