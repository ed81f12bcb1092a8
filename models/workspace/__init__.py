"""The workspace package: `Workspace` (the facade in `facade`) and the values it takes and gives,
importable from here as they always were (`from models.workspace import Workspace`). The parts
behind the facade are its own business: callers outside models/ import from here only.
It must never import the use cases (`models.usecases` sits above it)."""

from .facade import Workspace
from .passphrase import MIN_PASSPHRASE, OFFLINE_GUESSES, ThrottlePolicy, check_passphrase, strong_offline
from .values import (
    MAX_SKEW_MS,
    ApplyResult,
    ConflictView,
    Notice,
    RemoteOp,
    SearchResult,
    decode_op,
    encode_op,
    validation_error,
)

__all__ = [
    "Workspace",
    "RemoteOp",
    "ApplyResult",
    "ConflictView",
    "SearchResult",
    "validation_error",
    "MIN_PASSPHRASE",
    "Notice",
    "MAX_SKEW_MS",
    "ThrottlePolicy",
    "OFFLINE_GUESSES",
    "encode_op",
    "decode_op",
    "strong_offline",
    "check_passphrase",
]
