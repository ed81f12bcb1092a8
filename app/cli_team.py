"""The team and sync commands of the `outreach` CLI: join, invite, devices (with each device's
fingerprint, and whether a new device is let in only after its fingerprint was compared), admit (a
device waiting for that: the fingerprint its screen shows typed in, compared, the device let in),
revoke, sync, recover, erase, status, and notices (what this device refused or set aside for a
security reason). Thin: each parses its flags, asks the sync engine, prints. Kept
apart from `app.cli` so that the data commands load without the network stack.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

from sync import protocol as p
from sync.engine import SyncEngine

__all__ = ["add_commands"]


def _hours(text: str) -> float:
    from .cli import _hours as hours

    return hours(text)


def _person_id(ws: Any, typed: str) -> str:
    from .cli import person_id

    return person_id(ws, typed)


def _engine(args: argparse.Namespace, *, desk: bool = False) -> SyncEngine:
    """The sync engine over this device's workspace; `desk`: a coordinator's command (invite,
    devices, admit, revoke, erase), refused on a worker's device before the server is asked."""
    from .cli import open_workspace, require_desk

    ws = open_workspace(args)
    if desk:
        require_desk(ws)
    return SyncEngine(ws, allow_insecure=getattr(args, "allow_insecure", False))


def _progress_bar(phase: str, done: int, total: int) -> None:
    """A bar redrawn in place on a terminal; elsewhere (a log, a pipe) one whole line a step."""
    if total:
        width = 30
        filled = int(width * done / max(total, 1))
        text = f"{phase:<5} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
    else:
        text = f"{phase:<5} {done} ops"
    sys.stderr.write(f"\r{text}" if sys.stderr.isatty() else f"{text}\n")
    sys.stderr.flush()


def cmd_join(args: argparse.Namespace, out: Any) -> int:
    eng = _engine(args)
    res = eng.join(args.url, args.code, device_name=args.name, allow_insecure=args.allow_insecure)
    lines = [f"Joined team {res.team_name} as {res.role} ({res.status}).",
             f"This device's fingerprint: {res.fingerprint}"]
    if res.recovery_code:
        lines += ["", "RECOVERY CODE (print it and keep it locked away; it restores the team's keys):",
                  f"    {res.recovery_code}"]
    elif res.status == p.DeviceStatus.PENDING.value:
        lines += ["Waiting for the coordinator's device to check this device's proof. Run 'outreach sync' later."]
    out.emit({"team": res.team_name, "role": res.role, "status": res.status, "founding": res.founding,
              "fingerprint": res.fingerprint, "recovery_code": res.recovery_code}, "\n".join(lines))
    return 0


def cmd_recover(args: argparse.Namespace, out: Any) -> int:
    eng = _engine(args)
    res = eng.recover(args.url, args.code, allow_insecure=args.allow_insecure)
    report = eng.sync()
    out.emit({"team": res.team_name, "role": res.role, "pulled": report.pulled},
             f"Recovered team {res.team_name}: this device is now a coordinator. Pulled {report.pulled} changes.")
    return 0


def cmd_invite(args: argparse.Namespace, out: Any) -> int:
    eng = _engine(args, desk=True)
    code = eng.invite(p.Role(args.role), expires_in=int(args.hours * 3600))

    def text() -> str:
        lines = [f"One-time code for a new {args.role} device (valid {args.hours:g} h):", f"    {code}"]
        if args.qr:
            import io

            import segno

            buf = io.StringIO()
            segno.make(code, error="m").terminal(out=buf, compact=True)
            lines.append(buf.getvalue())
        return "\n".join(lines)
    out.emit({"code": code, "role": args.role, "expires_in_hours": args.hours}, text)
    return 0


def cmd_devices(args: argparse.Namespace, out: Any) -> int:
    eng = _engine(args, desk=True)
    if args.confirm_devices is not None:
        _set_confirms(eng, args.confirm_devices == "on")
    listing = eng.devices()
    # remembered as the app's devices screen does, so that 'outreach conflicts' can say who
    eng.ws.set_settings(desk_device_names=json.dumps({d.device_id: d.name for d in listing.devices}, sort_keys=True))
    prints = eng.fingerprints(listing)  # compare with each device's own screen before trusting it
    recovery = eng.recovery_status()
    here = eng.open_invites()
    confirms = eng.confirms_devices
    waiting = set(eng.awaiting_confirmation(listing))

    def text() -> str:
        made = recovery["made_at"]
        rows = [f"key epoch {listing.current_epoch}; open invites {listing.invites_pending}; "
                f"open invites here: {here}; recovery code: "
                + (f"made {datetime.fromtimestamp(float(made)):%d-%m-%Y}" if isinstance(made, float) else "none here")
                + f"; compare fingerprints before a device is let in: {'on' if confirms else 'off'}"]
        for d in listing.devices:
            seen = datetime.fromtimestamp(d.last_seen).strftime("%d-%m-%Y %H:%M") if d.last_seen else "never"
            rows.append(f"{d.device_id}  {d.role.value:<11} {d.status.value:<8} {d.name:<20.20} last sync {seen}"
                        f"  fingerprint {prints.get(d.device_id, '-')}"
                        + ("  WAITING: compare the fingerprint on its screen, then "
                           f"'outreach admit {d.device_id} FINGERPRINT'" if d.device_id in waiting else ""))
        return "\n".join(rows)
    data = listing.model_dump(mode="json")
    for device in data["devices"]:
        device["fingerprint"] = prints.get(device["device_id"])
        device["awaiting_confirmation"] = device["device_id"] in waiting
    out.emit({**data, "open_invites_here": here, "recovery": recovery, "confirms_devices": confirms}, text)
    return 0


def _set_confirms(eng: SyncEngine, on: bool) -> None:
    if eng.confirms_devices == on:
        return
    from models.vocab import AuditAction

    eng.set_confirms_devices(on)
    eng.ws.audit(AuditAction.CHANGE, None, None,
                 detail=f"compare fingerprints before a device is let in: {'on' if on else 'off'}")


def _listed_id(listing: p.DeviceList, text: str) -> str:
    """A device id as typed: the whole id, or a prefix of 6 or more characters that only one has."""
    from .cli import CliError

    typed = text.strip().lower()
    ids = [d.device_id for d in listing.devices]
    if typed in ids:
        return typed
    found = [i for i in ids if len(typed) >= 6 and i.startswith(typed)]
    if len(found) != 1:
        raise CliError(f"no device with id {text!r} (see 'outreach devices')" if not found else
                       f"more than one device has an id starting with {text!r}: type more of it")
    return found[0]


def cmd_admit(args: argparse.Namespace, out: Any) -> int:
    """Coordinator: the fingerprint the joining device shows, compared with the key the server
    lists for it; when they match it is let in at once, when they differ it is not."""
    from models.vocab import AuditAction

    from .cli import CliError
    from .state import typed_fingerprint

    shown = " ".join(args.fingerprint)
    try:
        typed_fingerprint(shown)
    except ValueError:
        raise CliError("a fingerprint is what the new device shows: 0-9 and A-F, "
                       "e.g. 1A2B 3C4D 5E6F 7A8B 9C0D") from None
    eng = _engine(args, desk=True)
    listing = eng.devices()
    device_id = _listed_id(listing, args.device_id)
    if device_id not in eng.awaiting_confirmation(listing):
        raise CliError(f"{device_id} does not wait for its fingerprint to be compared"
                       + ("" if eng.confirms_devices else
                          " (comparing is off: 'outreach devices --confirm-devices on')"))
    listed = "".join(eng.fingerprints(listing)[device_id].split())
    try:
        seen = typed_fingerprint(shown, length=len(listed))
    except ValueError:
        raise CliError(f"a fingerprint has {len(listed)} characters, 0-9 and A-F") from None
    eng.confirm_device(device_id, seen)  # ProofMismatch: the fingerprints differ, not let in
    eng.ws.audit(AuditAction.CHANGE, None, None, detail=f"device fingerprint compared: {device_id}")
    admitted, rejected = eng.admit_pending()
    dev = next((d for d in eng.devices().devices if d.device_id == device_id), None)
    status = dev.status.value if dev else "unknown"
    if status == p.DeviceStatus.REJECTED.value:
        raise CliError(f"{device_id} was not let in: its proof does not match the code it was invited with")
    if status != p.DeviceStatus.ACTIVE.value:
        raise CliError(f"{device_id} was not let in yet ({status})")
    name = dev.name if dev else ""
    out.emit({"device_id": device_id, "name": name, "status": status, "fingerprint": seen,
              "admitted": admitted, "rejected": rejected},
             f"Let in {device_id} ({name}): its fingerprint matched, and it has the team's key.")
    return 0


def cmd_revoke(args: argparse.Namespace, out: Any) -> int:
    eng = _engine(args, desk=True)
    epoch = eng.revoke(args.device_id)
    out.emit({"revoked": args.device_id, "epoch": epoch},
             f"Revoked {args.device_id}. New team key epoch {epoch} given to the remaining devices.")
    return 0


def cmd_sync(args: argparse.Namespace, out: Any) -> int:
    eng = _engine(args)
    report = eng.sync(_progress_bar if args.progress else None)
    if args.progress and sys.stderr.isatty():
        sys.stderr.write("\n")
    if report.pending:
        out.emit({"pending": True}, "Waiting for the coordinator to let this device in.")
        return 0
    # received: other devices' changes taken in (a pull also brings this device's own ops back)
    received = report.applied + report.set_aside
    out.emit({**report.__dict__, "received": received}, f"Synced: sent {report.pushed}, received {received}"
                              + (f", {report.set_aside} set aside" if report.set_aside else "")
                              + (f", admitted {report.admitted} device(s)" if report.admitted else "")
                              + (f", refused {report.rejected} device(s) whose proof failed" if report.rejected else ""))
    return 0


def cmd_status(args: argparse.Namespace, out: Any) -> int:
    eng = _engine(args)
    st = eng.status()
    when = datetime.fromtimestamp(st.last_success).strftime("%d-%m-%Y %H:%M") if st.last_success else "never"
    notices = len(eng.ws.notices())
    out.emit({**st.__dict__, "device_id": eng.ws.device_id, "team": eng.ws.setting("team_name"), "notices": notices},
             f"team: {eng.ws.setting('team_name') or '-'} ({st.role or 'not joined'}, "
             f"{st.device_status or '-'})\nwaiting to send: {st.pending_ops}\nlast sync: {when}"
             + (f"\nlast error: {st.last_error}" if st.last_error else "")
             + (f"\nsecurity notices: {notices} (see 'outreach notices')" if notices else ""))
    return 0


def cmd_notices(args: argparse.Namespace, out: Any) -> int:
    """What this device refused or set aside for a security reason (docs/SECURITY.md), oldest
    first: kinds, ids and technical sentences, never personal data. Needs no server."""
    from .cli import open_workspace

    notices = open_workspace(args).notices()

    def line(n: Any) -> str:
        return (f"{n.at:%d-%m-%Y %H:%M}  {n.kind:<13} record {n.record_id or '-'}  "
                f"device {n.device_id[:8] if n.device_id else '-'}  {n.detail}")
    out.emit([{"at": n.at.isoformat(timespec="seconds"), "kind": n.kind, "record_id": n.record_id,
               "device_id": n.device_id, "detail": n.detail} for n in notices],
             lambda: "\n".join(line(n) for n in notices) or "No notices.")
    return 0


def cmd_erase(args: argparse.Namespace, out: Any) -> int:
    eng = _engine(args, desk=True)
    pid = _person_id(eng.ws, args.person_id)
    if not args.yes:
        if not sys.stdin.isatty():
            from .cli import CliError
            raise CliError("erasing needs confirmation: add --yes")
        if input(f"Erase person {pid} and all their contacts on every device? Type 'erase': ") != "erase":
            return 1
    n = eng.erase_person(pid)
    out.emit({"erased": pid, "records": n}, f"Erased {pid}: {n} records purged everywhere.")
    return 0


def add_commands(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    def add(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text)
        sp.set_defaults(handler=handler)
        return sp

    sp = add("join", cmd_join, "join a team with a server URL and a one-time code")
    sp.add_argument("url")
    sp.add_argument("code")
    sp.add_argument("--name", help="a label for this device, visible to the server (no person's name)")
    sp.add_argument("--allow-insecure", action="store_true", help="allow plain http:// to a non-loopback host")
    sp = add("recover", cmd_recover, "restore the team's keys on a new coordinator device")
    sp.add_argument("url")
    sp.add_argument("code")
    sp.add_argument("--allow-insecure", action="store_true")
    sp = add("invite", cmd_invite, "coordinator: a one-time code for a new device")
    sp.add_argument("--role", choices=[r.value for r in p.Role], default=p.Role.WORKER.value)
    sp.add_argument("--hours", type=_hours, default=24.0, help="how long the code works: a minute to a week")
    sp.add_argument("--qr", action="store_true", help="also draw the code as a QR code")
    sp = add("devices", cmd_devices, "coordinator: the team's devices, each with its fingerprint")
    sp.add_argument("--confirm-devices", choices=("on", "off"),
                    help="on: let a new device in only after its fingerprint was compared ('outreach admit')")
    sp = add("admit", cmd_admit, "coordinator: compare a waiting device's fingerprint and let it in")
    sp.add_argument("device_id", help="its id (or a unique prefix of 6+ characters), see 'outreach devices'")
    sp.add_argument("fingerprint", nargs="+", help="as the new device shows it, e.g. 1A2B 3C4D 5E6F 7A8B 9C0D")
    sp = add("revoke", cmd_revoke, "coordinator: revoke a device (new key epoch for the rest)")
    sp.add_argument("device_id")
    sp = add("sync", cmd_sync, "send and receive changes now")
    sp.add_argument("--progress", action="store_true", help="show a progress bar")
    add("status", cmd_status, "team membership and sync status")
    add("notices", cmd_notices, "security notices: keys, erasures and changes this device refused or set aside")
    sp = add("erase", cmd_erase, "coordinator: erase a person everywhere (GDPR art. 17)")
    sp.add_argument("person_id")
    sp.add_argument("--yes", action="store_true", help="do not ask for confirmation")
