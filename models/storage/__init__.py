"""Storage and crypto: the sealed SQLite file (`store`, `migrations`: the only SQL on the client)
and the vault (`vault`: the only `cryptography` import on the client). It knows rows, blobs and
keys, never what a record means beyond its type; it imports only `domain` and `errors`, never the
workspace or the use cases."""

__all__: list[str] = []
