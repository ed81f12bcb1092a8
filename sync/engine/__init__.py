"""The sync engine: one workspace + one client -> team membership and sync runs.

`SyncEngine` (facade.py) is the one object the app talks to; it holds no rule of its own beyond the
order of a sync run and hands each call to the part that owns it. The parts share one small
`EngineContext` (the workspace, the client, the knobs of a run) and call each other only downwards:

    context      the workspace, the cached client, team/role, pinned devices and authority, cut-offs
    reports      SyncStatus, SyncReport, JoinResult, RevokeReport, CheckpointReport, Progress
    roster       RosterEntry; the coordinator's signed word on each device, kept, refreshed, published
    keys         key grants in (adopt) and out (grant), key epochs, the recovery code
    authority    a team of the previous version moving to signed authority; signing-key announces
    enrol        join, recover, invites, admitting pending devices (proof, fingerprint)
    push         the outbox, pushed in signed batches, pipelined
    pull         the log, pulled in pages, checked (signatures, cut-offs, gaps), stored, folded
    revocation   revoke (a new key epoch) and retire (hand over, then revoke)
    erasure      a person erased; late records of erased persons purged
    checkpoints  a coordinator writing a checkpoint, a new device starting from one
    facade       SyncEngine: the sync run and the lock around it, and everything else delegated

Keys never leave the vault except wrapped for a device whose proof a coordinator checked itself,
in a grant signed by the team's authority key; a device adopts a key only from such a grant, never
overwrites a key it holds, and applies only signed purges (docs/SECURITY.md). Nothing here may be
imported by the server (`sync.server`), and nothing here imports the app.
"""

from sync.engine.facade import SyncEngine
from sync.engine.reports import CheckpointReport, JoinResult, Progress, RevokeReport, SyncReport, SyncStatus
from sync.engine.roster import RosterEntry
from sync.errors import WouldStrand

__all__ = ["SyncEngine", "SyncStatus", "SyncReport", "JoinResult", "Progress", "RevokeReport", "WouldStrand",
           "CheckpointReport", "RosterEntry"]
