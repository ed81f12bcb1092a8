"""Every read and write of the server's database: keyword-only functions that take the session,
one module per area (the same areas as `sync.server.routes`).

    base         sha256_hex, ping, chunked IN lists, the drivers' parameter marks
    teams        a team and its founding code, invites, join, recover
    throttle     failed code lookups, per address and per server
    devices      a device by token, listed, seen, revoked
    keys         wrapped team keys per device and epoch, and under the recovery key
    log          push (the team's log sequence, under a lock on the team row) and pull pages
    roster       the coordinator's signed roster entries; a device's announced signing key
    purge        a record's ops deleted, a purge entry in the log, older checkpoints dropped
    checkpoints  sealed checkpoint parts, kept blind

Every area owns the SQL and the rules that must hold inside one transaction. The caller (a route
handler) owns the transaction (`Database.transaction`) and decodes the wire format; the functions
take plain values and raise only `ApiError`. They must never open a transaction themselves, read
sealed bytes as anything but opaque bytes, or log anything but ids and counts (never a device
name, a hash or a payload). This package re-exports every function, for tools and tests that use
the data layer as one (`crud.create_team(...)`); the routes import the area they serve. (Not
`roster.roster`: `crud.roster` is the module.)
"""

from sync.server.crud.base import ping, sha256_hex
from sync.server.crud.checkpoints import (
    KEEP_CHECKPOINTS,
    checkpoint_part,
    create_checkpoint,
    list_checkpoints,
    put_checkpoint_part,
)
from sync.server.crud.devices import device_by_token, get_device, list_devices, revoke_device, touch_device
from sync.server.crud.keys import keys_for_device, store_recovery, upload_keys
from sync.server.crud.log import OpRow, PullPage, PurgeRow, PushOp, PushResult, pull_log, push_ops
from sync.server.crud.purge import purge_records
from sync.server.crud.roster import announce_signing_key, put_roster, roster_entry
from sync.server.crud.teams import (
    count_open_invites,
    create_invite,
    create_team,
    get_team,
    join_team,
    recover_team,
)
from sync.server.crud.throttle import record_failure, server_throttle_retry_after, throttle_retry_after

__all__ = [
    "sha256_hex",
    "ping",
    "create_team",
    "get_team",
    "throttle_retry_after",
    "server_throttle_retry_after",
    "record_failure",
    "join_team",
    "recover_team",
    "device_by_token",
    "touch_device",
    "get_device",
    "list_devices",
    "count_open_invites",
    "create_invite",
    "revoke_device",
    "keys_for_device",
    "upload_keys",
    "store_recovery",
    "PushOp",
    "PushResult",
    "push_ops",
    "OpRow",
    "PurgeRow",
    "PullPage",
    "pull_log",
    "roster_entry",
    "put_roster",
    "announce_signing_key",
    "purge_records",
    "KEEP_CHECKPOINTS",
    "create_checkpoint",
    "put_checkpoint_part",
    "list_checkpoints",
    "checkpoint_part",
]
