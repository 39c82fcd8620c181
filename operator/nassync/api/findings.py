"""Gate rule ids: part of the API, shared by the mover's gate and admission.

The first five are the lab app's own rule ids (ExLabWizard's `problem_class`,
docs/troubleshooting.md): they fire on the same conditions as there, so that an
override the lab app records in creation.json lifts exactly the findings it
lifts in the lab app. The others are nassync's own and keep their own ids.

A SyncJob may acknowledge the overridable ones in `spec.overrides`; the
webhook refuses any other name (a typo would silently override nothing).
"""

from __future__ import annotations

# The lab app's rules (hard tier there and here).
UNRESOLVED_PLACEHOLDER = "unresolved_placeholder_token"  # <name> tokens
LEFTOVER_JINJA_MARKER = "leftover_jinja_marker"  # {{ ... }} or {% ... %}
ILLEGAL_CHARACTER = "illegal_filesystem_character"  # <>:"/\|?*, C0 controls, trailing dot or space
RESERVED_NAME = "reserved_filesystem_name"  # CON, PRN, AUX, NUL, COM1-9, LPT1-9 (before the first dot)
MODE_PREFIX_MISMATCH = "mode_prefix_mismatch"  # creation.json run_kind vs Run_/TestRun_ and TestRuns/

# nassync's own hard rules that a person may acknowledge for one run.
CONTROL_CHARACTER = "control_character"  # control, format or line-separator characters
NON_UTF8_NAME = "non_utf8_name"
PATH_TOO_LONG = "path_too_long"
SYMLINK_ESCAPES = "symlink_escapes_run"

# Hard rules nothing can lift: there is nothing (readable) to push, the path is
# not the run, the run holds another run, or the transport cannot carry a name.
RUN_MISSING = "run_missing"
RUN_EMPTY = "run_empty"
RUN_OUTSIDE_SOURCE = "run_outside_source"
UNREADABLE = "unreadable_path"
CACHE_DIR_NOT_DIRECTORY = "cache_dir_not_directory"
NESTED_RUN = "nested_run"
TRANSPORT_RESERVED_NAME = "transport_reserved_name"

# Soft rules: reported, never blocking.
HIDDEN_FILE = "hidden_file"
SYMLINK_NOT_COPIED = "symlink_not_copied"
SPECIAL_FILE = "special_file"
EMPTY_DIRECTORY = "empty_directory_not_copied"
FUTURE_MTIME = "future_modification_time"
CREATION_UNREADABLE = "creation_json_unreadable"

OVERRIDABLE: tuple[str, ...] = (
    UNRESOLVED_PLACEHOLDER,
    LEFTOVER_JINJA_MARKER,
    ILLEGAL_CHARACTER,
    RESERVED_NAME,
    MODE_PREFIX_MISMATCH,
    CONTROL_CHARACTER,
    NON_UTF8_NAME,
    PATH_TOO_LONG,
    SYMLINK_ESCAPES,
)
NOT_OVERRIDABLE: frozenset[str] = frozenset({
    RUN_MISSING, RUN_EMPTY, RUN_OUTSIDE_SOURCE, UNREADABLE, CACHE_DIR_NOT_DIRECTORY, NESTED_RUN,
    TRANSPORT_RESERVED_NAME,
})
# Ids a SyncJob written for an older nassync may still name; accepted, and
# documented in docs/upgrading.md as lifting nothing any more.
RETIRED: tuple[str, ...] = ("hidden_file",)
