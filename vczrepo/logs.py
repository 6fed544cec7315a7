"""icechunk's log lines, as vczrepo lives with them.

icechunk logs from Rust (`tracing`) into one subscriber per process, which writes to stderr,
is built when icechunk is first imported, and has one filter for the whole process
(`icechunk.set_logs_filter`, the ICECHUNK_LOG variable), with no getter. Its events name
only their Rust module: none says which storage object it is about. Two of its warnings are
moot for vczrepo's local repositories, whose writes vczrepo serialises with its own lock:

- "The LocalFileSystem storage is not safe for concurrent commits…", logged at every
  local storage made (`icechunk_arrow_object_store`, the module of every object-store
  backend): `local_storage` raises the filter for that module for the moment of the call
  only, then restores the filter the environment gives (what icechunk set at import);
- "conditional PUT is enabled but `unsafe_use_metadata` is disabled…", logged once per
  process at the first conditional write without object metadata (local storage has none):
  vczrepo's local repositories make no conditional write (storage.creation_config), so
  it is never logged on their account, and a host's own storage still gets it.

The first import of icechunk builds the subscriber coloured (ANSI) unless NO_COLOR is set:
`import_icechunk` sets NO_COLOR for that moment when stderr is not a terminal.
"""

from __future__ import annotations

import os
import sys
import threading
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import icechunk

LOCAL_STORAGE_WARNING_MODULE = "icechunk_arrow_object_store"
_filter_lock = threading.Lock()


def import_icechunk() -> ModuleType:
    """icechunk, imported: the first time without colour in its log lines unless stderr is a terminal."""
    if "icechunk" in sys.modules or "NO_COLOR" in os.environ or os.isatty(2):
        import icechunk

        return icechunk
    os.environ["NO_COLOR"] = "1"  # read once, by the subscriber icechunk builds at import
    try:
        import icechunk
    finally:
        os.environ.pop("NO_COLOR", None)
    return icechunk


def local_storage(path: str) -> icechunk.Storage:
    """icechunk's storage for a local repository, without the warning icechunk logs at each one
    made. No log line is lost unless another thread logs from that module at that moment; a
    host that set icechunk's filter in code (not through ICECHUNK_LOG) gets ICECHUNK_LOG's back."""
    ice = import_icechunk()
    if "ICECHUNK_NO_LOGS" in os.environ:  # no subscriber: setting a filter would start one
        return ice.local_filesystem_storage(path)
    with _filter_lock:
        ice.set_logs_filter(f"{os.environ.get('ICECHUNK_LOG') or 'warn'},{LOCAL_STORAGE_WARNING_MODULE}=error")
        try:
            return ice.local_filesystem_storage(path)
        finally:
            ice.set_logs_filter(None)  # the filter from ICECHUNK_LOG, as at import
