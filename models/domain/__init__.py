"""The domain: what a record is (vocabularies, the SQLModel families and their validation), how
concurrent edits merge (`merge`, `clock`), short ids, and the in-memory index of opened records.
It must never open a file, speak SQL or hold a key: it imports nothing from `storage`,
`workspace` or `usecases`, nor `sqlite3` or `cryptography`."""

__all__: list[str] = []
