"""The Outreach sync server: a blind store of sealed ops and wrapped keys, per `sync/PROTOCOL.md`.

Public surface: `create_app(settings)` and `ServerSettings`, plus `Database`/`migrate` for tools and
tests, `ApiError`, and `ServerKey`/`load_server_key` (the server's own key, for tools that create
teams). Modules: `config` (settings), `keys` (the server key: keyed lookups, the sealed founding
secret), `tables` (schema classes), `db` (engines, transactions, migrations), `crud` (all SQL), `middleware` (protocol/size/gzip gate), `app` (routes),
`cli` (`outreach-server`). The server imports only `sync.protocol` from the rest of the project:
never `models`, `app` or `sync.client`, never a team key or the vault, and it never logs a payload.
"""

from sync.server.app import create_app
from sync.server.config import ServerSettings
from sync.server.db import Database, MigrationError, migrate
from sync.server.errors import ApiError
from sync.server.keys import ServerKey, load_server_key

__all__ = ["ApiError", "Database", "MigrationError", "ServerKey", "ServerSettings", "create_app", "load_server_key",
           "migrate"]
