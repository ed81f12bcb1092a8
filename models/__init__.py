"""The client's data: everything a device knows, sealed on its disk, in four layers whose imports
flow one way (use cases → workspace → storage → domain; `errors` is the exception tree all share):

- `domain/`: what a record is and how concurrent edits merge (vocabularies, the SQLModel
  families, the hybrid clock, the merge rules, short ids, the in-memory index). Pure: no file, no
  SQL, no key.
- `storage/`: the sealed SQLite file (`store`, `migrations`: the only SQL on the client) and the
  vault (`vault`: the only `cryptography` import on the client).
- `workspace/`: the service layer the CLI, the UI and the sync engine share: `Workspace`, a thin
  facade over parts with one job each.
- `usecases/`: the coordinator's tools over an unlocked workspace (review, access requests,
  reports, exports, demo data).

Nothing here imports from `app` or `sync`, prints, or logs personal data.
"""

__all__: list[str] = []
