"""The use cases over an unlocked workspace: the coordinator's review (conflicts, duplicates,
retention), the access request of GDPR art. 15 and the audit log, the reports, the exports and the
demo data. Every change goes through the `Workspace`'s writes; nothing here speaks SQL, holds a
key, prints or logs personal data."""

__all__: list[str] = []
