"""View-models of the Flet app: plain data the screens show and the drafts the forms fill in, with
the rules that need no I/O (parsing what a worker typed, checking a form, choosing what the sync
chip says, which layout fits a width). Nothing here touches a control, a file or the network;
`app.services` fills these objects in, the screens of `app.ui` draw them.

Here, at app/ level and not inside `app.ui`, because the facade (`app.services`) makes them and
the UI draws them: the facade must not import the UI. One module per job: `forms` (typed input
and drafts), `chip` (the sync chip), `records` (the worker's rows), `device` (this device and its
notices), `desk` (the coordinator's views), `layout` (choices and the layout rule); this package
re-exports them all.
"""

from .chip import ChipModel, SyncView, chip_model
from .desk import (
    AuditRow,
    CountView,
    DeskConflict,
    DeskDevice,
    DevicesView,
    DuplicateRow,
    ErasureView,
    ExportDone,
    ExportPlan,
    Invite,
    OverviewView,
    RetentionRow,
)
from .device import NOTICE_KINDS, DeviceInfo, JoinOutcome, NoticeRow
from .forms import (
    FORM_FIELDS,
    ContactDraft,
    PersonDraft,
    PlaceDraft,
    parse_count,
    parse_date,
    parse_when,
    typed_fingerprint,
)
from .layout import (
    AUTOLOCK_CHOICES,
    NOT_SEEN_CHOICES,
    PERIOD_CHOICES,
    SEARCH_PAUSE,
    WIDE_MIN_WIDTH,
    Preferences,
    is_wide,
    period_bounds,
)
from .records import (
    ConflictRow,
    ContactChoices,
    ContactRow,
    FollowUpRow,
    PersonDetail,
    PersonRow,
    PlaceDetail,
    PlaceRow,
    TodayData,
)

__all__ = ["WIDE_MIN_WIDTH", "SEARCH_PAUSE", "is_wide", "parse_date", "parse_when", "ContactDraft", "PersonDraft", "PlaceDraft", "SyncView", "ChipModel", "chip_model", "ContactRow", "FollowUpRow", "PersonRow", "PlaceRow", "ConflictRow", "PersonDetail", "PlaceDetail", "TodayData", "ContactChoices", "DeviceInfo", "JoinOutcome", "NOTICE_KINDS", "NoticeRow", "Preferences", "AUTOLOCK_CHOICES", "NOT_SEEN_CHOICES", "FORM_FIELDS", "PERIOD_CHOICES", "period_bounds", "parse_count", "typed_fingerprint", "DeskDevice", "DevicesView", "Invite", "OverviewView", "DeskConflict", "DuplicateRow", "ErasureView", "RetentionRow", "AuditRow", "ExportPlan", "ExportDone", "CountView"]
