"""The team and sync commands of the `outreach` CLI: join, invite, devices (with each device's
fingerprint, and whether a new device is let in only after its fingerprint was compared), admit (a
device waiting for that: the fingerprint its screen shows typed in, compared, the device let in),
revoke, sync, recover, erase, status, and notices (what this device refused or set aside for a
security reason). Thin: each parses its flags, asks the sync engine, prints. Kept
apart from the data commands (`records`), which never import the network stack.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

from models.domain.vocab import AuditAction
from sync import protocol as p
from sync.engine import SyncEngine

from ..state import typed_fingerprint
from .common import CliError, hours, one_line, open_workspace, person_id, require_desk, say, words

__all__ = ["add_commands"]


def _engine(args: argparse.Namespace, *, desk: bool = False) -> SyncEngine:
    """The sync engine over this device's workspace; `desk`: a coordinator's command (invite,
    devices, admit, revoke, erase), refused on a worker's device before the server is asked."""
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
    t = words()
    lines = [say("cli.join.done", team=res.team_name, role=t(f"role.{res.role}"),
                 status=t(f"device_status.{res.status}")),
             say("cli.join.fingerprint", fingerprint=res.fingerprint)]
    if res.recovery_code:
        lines += ["", say("cli.join.recovery"), f"    {res.recovery_code}"]
    elif res.status == p.DeviceStatus.PENDING.value:
        lines += [say("cli.join.pending")]
    out.emit({"team": res.team_name, "role": res.role, "status": res.status, "founding": res.founding,
              "fingerprint": res.fingerprint, "recovery_code": res.recovery_code}, "\n".join(lines))
    return 0


def cmd_recover(args: argparse.Namespace, out: Any) -> int:
    eng = _engine(args)
    res = eng.recover(args.url, args.code, allow_insecure=args.allow_insecure)
    report = eng.sync()
    out.emit({"team": res.team_name, "role": res.role, "pulled": report.pulled},
             say("cli.recover.done", team=res.team_name, n=report.applied))
    return 0


def cmd_invite(args: argparse.Namespace, out: Any) -> int:
    eng = _engine(args, desk=True)
    code = eng.invite(p.Role(args.role), expires_in=int(args.hours * 3600))

    def text() -> str:
        lines = [say("cli.invite.code", role=words()(f"role.{args.role}"), hours=f"{args.hours:g}"), f"    {code}"]
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
        t = words()
        made = recovery["made_at"]
        rows = [say("cli.devices.head", epoch=listing.current_epoch, invites=listing.invites_pending, here=here,
                    recovery=(say("cli.devices.recovery_made", date=f"{datetime.fromtimestamp(float(made)):%d-%m-%Y}")
                              if isinstance(made, float) else say("cli.devices.recovery_none")),
                    compare=say("cli.on") if confirms else say("cli.off"))]
        for d in listing.devices:
            seen = (datetime.fromtimestamp(d.last_seen).strftime("%d-%m-%Y %H:%M") if d.last_seen
                    else say("cli.devices.never"))
            rows.append(f"{d.device_id}  {t(f'role.{d.role.value}'):<12.12} {t(f'device_status.{d.status.value}'):<12} "
                        f"{one_line(d.name):<20.20} "
                        + say("cli.devices.row", seen=seen, fingerprint=prints.get(d.device_id, "-"))
                        + ("  " + say("cli.devices.waiting", id=d.device_id) if d.device_id in waiting else ""))
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

    eng.set_confirms_devices(on)
    eng.ws.audit(AuditAction.CHANGE, None, None,
                 detail=f"compare fingerprints before a device is let in: {'on' if on else 'off'}")


def _listed_id(listing: p.DeviceList, text: str) -> str:
    """A device id as typed: the whole id, or a prefix of 6 or more characters that only one has."""

    typed = text.strip().lower()
    ids = [d.device_id for d in listing.devices]
    if typed in ids:
        return typed
    found = [i for i in ids if len(typed) >= 6 and i.startswith(typed)]
    if len(found) != 1:
        raise CliError(say("cli.devices.no_such", typed=text) if not found else
                       say("cli.devices.ambiguous", typed=text))
    return found[0]


def cmd_admit(args: argparse.Namespace, out: Any) -> int:
    """Coordinator: the fingerprint the joining device shows, compared with the key the server
    lists for it; when they match it is let in at once, when they differ it is not."""


    shown = " ".join(args.fingerprint)
    try:
        typed_fingerprint(shown)
    except ValueError:
        raise CliError(say("cli.admit.bad_fingerprint")) from None
    eng = _engine(args, desk=True)
    listing = eng.devices()
    device_id = _listed_id(listing, args.device_id)
    if device_id not in eng.awaiting_confirmation(listing):
        raise CliError(say("cli.admit.not_waiting", id=device_id)
                       + ("" if eng.confirms_devices else " " + say("cli.admit.comparing_off")))
    listed = "".join(eng.fingerprints(listing)[device_id].split())
    try:
        seen = typed_fingerprint(shown, length=len(listed))
    except ValueError:
        raise CliError(say("cli.admit.length", n=len(listed))) from None
    eng.confirm_device(device_id, seen)  # ProofMismatch: the fingerprints differ, not let in
    eng.ws.audit(AuditAction.CHANGE, None, None, detail=f"device fingerprint compared: {device_id}")
    admitted, rejected = eng.admit_pending()
    dev = next((d for d in eng.devices().devices if d.device_id == device_id), None)
    status = dev.status.value if dev else "unknown"
    if status == p.DeviceStatus.REJECTED.value:
        raise CliError(say("cli.admit.rejected", id=device_id))
    if status != p.DeviceStatus.ACTIVE.value:
        raise CliError(say("cli.admit.not_yet", id=device_id, status=words()(f"device_status.{status}")))
    name = dev.name if dev else ""
    out.emit({"device_id": device_id, "name": name, "status": status, "fingerprint": seen,
              "admitted": admitted, "rejected": rejected},
             say("cli.admit.done", id=device_id, name=one_line(name)))
    return 0


def cmd_revoke(args: argparse.Namespace, out: Any) -> int:
    """Coordinator: revoke a lost device at once (what it did not sync is lost: said so)."""

    eng = _engine(args, desk=True)
    device_id = _listed_id(eng.devices(), args.device_id)
    last_seen, _seen = eng.loss_preview(device_id)
    report = eng.revoke_with_report(device_id)
    eng.ws.audit(AuditAction.CHANGE, None, None,
                 detail=f"device revoked: {device_id}; new key for {len(report.keyed)} devices")
    when = datetime.fromtimestamp(last_seen).strftime("%d-%m-%Y %H:%M") if last_seen else None
    out.emit({"revoked": device_id, "epoch": report.epoch, "keyed": list(report.keyed), "last_seen": last_seen},
             say("cli.revoke.done", id=device_id, epoch=report.epoch) + "\n"
             + (say("cli.revoke.lost_since", when=when) if when else say("cli.revoke.lost_all")))
    return 0


def cmd_retire(args: argparse.Namespace, out: Any) -> int:
    """Coordinator: ask a device still in hand to hand over everything and leave (nothing lost)."""


    eng = _engine(args, desk=True)
    device_id = _listed_id(eng.devices(), args.device_id)
    try:
        eng.retire(device_id)
    except ValueError:
        raise CliError(say("cli.devices.no_such", typed=args.device_id)) from None
    eng.ws.audit(AuditAction.CHANGE, None, None, detail=f"device asked to retire: {device_id}")
    out.emit({"retiring": device_id}, say("cli.retire.done", id=device_id))
    return 0


def cmd_sync(args: argparse.Namespace, out: Any) -> int:
    eng = _engine(args)
    eng.ROSTER_EVERY = 0  # a sync asked for by hand looks at once whether the coordinator retired it
    report = eng.sync(_progress_bar if args.progress else None)
    if args.progress and sys.stderr.isatty():
        sys.stderr.write("\n")
    if report.pending:
        out.emit({"pending": True}, say("cli.sync.pending"))
        return 0
    # received: other devices' changes taken in (a pull also brings this device's own ops back)
    received = report.applied + report.set_aside
    out.emit({**report.__dict__, "received": received}, say("cli.sync.done", sent=report.pushed, received=received)
             + (say("cli.sync.from_checkpoint", n=report.from_checkpoint) if report.from_checkpoint else "")
             + (say("cli.sync.resent", n=report.resent) if report.resent else "")
             + (say("cli.sync.set_aside", n=report.set_aside) if report.set_aside else "")
             + (say("cli.sync.admitted", n=report.admitted) if report.admitted else "")
             + (say("cli.sync.rejected", n=report.rejected) if report.rejected else ""))
    return 0


def cmd_checkpoint(args: argparse.Namespace, out: Any) -> int:
    """Coordinator: sync, then write a checkpoint of the team's state (new devices start from it)."""
    eng = _engine(args, desk=True)
    eng.sync()
    made = eng.make_checkpoint(force=True)
    if made is None:
        out.emit({"checkpoint": None}, say("cli.checkpoint.none"))
        return 0
    out.emit({"checkpoint": made.checkpoint_id, "seq": made.seq, "parts": made.parts, "bytes": made.size},
             say("cli.checkpoint.done", seq=made.seq, parts=made.parts, mb=f"{made.size / 1e6:.1f}"))
    return 0


def cmd_status(args: argparse.Namespace, out: Any) -> int:
    eng = _engine(args)
    st = eng.status()
    t = words()
    when = (datetime.fromtimestamp(st.last_success).strftime("%d-%m-%Y %H:%M") if st.last_success
            else say("cli.devices.never"))
    notices = len(eng.ws.notices())
    out.emit({**st.__dict__, "device_id": eng.ws.device_id, "team": eng.ws.setting("team_name"), "notices": notices},
             say("cli.status.text", team=one_line(eng.ws.setting("team_name")) or "-",
                 role=t(f"role.{st.role}") if st.role else say("cli.status.not_joined"),
                 status=t(f"device_status.{st.device_status}") if st.device_status else "-",
                 pending=st.pending_ops, when=when)
             + ("\n" + say("cli.status.last_error", error=st.last_error) if st.last_error else "")
             + ("\n" + say("cli.status.notices", n=notices) if notices else ""))
    return 0


def cmd_notices(args: argparse.Namespace, out: Any) -> int:
    """What this device refused or set aside for a security reason (docs/SECURITY.md), oldest
    first: kinds, ids and technical sentences, never personal data. Needs no server."""

    notices = open_workspace(args).notices()

    def line(n: Any) -> str:
        return say("cli.notices.line", at=f"{n.at:%d-%m-%Y %H:%M}", kind=f"{n.kind:<13}", record=n.record_id or "-",
                   device=n.device_id[:8] if n.device_id else "-", detail=n.detail)
    out.emit([{"at": n.at.isoformat(timespec="seconds"), "kind": n.kind, "record_id": n.record_id,
               "device_id": n.device_id, "detail": n.detail} for n in notices],
             lambda: "\n".join(line(n) for n in notices) or say("cli.notices.none"))
    return 0


def cmd_erase(args: argparse.Namespace, out: Any) -> int:
    eng = _engine(args, desk=True)
    pid = person_id(eng.ws, args.person_id)
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError(say("cli.erase.confirm_needed"))
        if input(say("cli.erase.question", id=pid) + " ") != "erase":
            return 1
    n = eng.erase_person(pid)
    out.emit({"erased": pid, "records": n}, say("cli.erase.done", id=pid, n=n))
    return 0


def add_commands(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    def add(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text)
        sp.set_defaults(handler=handler)
        return sp

    sp = add("join", cmd_join, say("cli.help.join"))
    sp.add_argument("url")
    sp.add_argument("code")
    sp.add_argument("--name", help=say("cli.help.device_name"))
    sp.add_argument("--allow-insecure", action="store_true", help=say("cli.help.allow_insecure"))
    sp = add("recover", cmd_recover, say("cli.help.recover"))
    sp.add_argument("url")
    sp.add_argument("code")
    sp.add_argument("--allow-insecure", action="store_true")
    sp = add("invite", cmd_invite, say("cli.help.invite"))
    sp.add_argument("--role", choices=[r.value for r in p.Role], default=p.Role.WORKER.value)
    sp.add_argument("--hours", type=hours, default=24.0, help=say("cli.help.hours"))
    sp.add_argument("--qr", action="store_true", help=say("cli.help.qr"))
    sp = add("devices", cmd_devices, say("cli.help.devices"))
    sp.add_argument("--confirm-devices", choices=("on", "off"),
                    help=say("cli.help.confirm_devices"))
    sp = add("admit", cmd_admit, say("cli.help.admit"))
    sp.add_argument("device_id", help=say("cli.help.admit_device"))
    sp.add_argument("fingerprint", nargs="+", help=say("cli.help.fingerprint"))
    sp = add("revoke", cmd_revoke, say("cli.help.revoke"))
    sp.add_argument("device_id", help=say("cli.help.admit_device"))
    sp = add("retire", cmd_retire, say("cli.help.retire"))
    sp.add_argument("device_id", help=say("cli.help.admit_device"))
    sp = add("sync", cmd_sync, say("cli.help.sync"))
    sp.add_argument("--progress", action="store_true", help=say("cli.help.progress"))
    add("checkpoint", cmd_checkpoint, say("cli.help.checkpoint"))
    add("status", cmd_status, say("cli.help.status"))
    add("notices", cmd_notices, say("cli.help.notices"))
    sp = add("erase", cmd_erase, say("cli.help.erase"))
    sp.add_argument("person_id")
    sp.add_argument("--yes", action="store_true", help=say("cli.help.yes"))
