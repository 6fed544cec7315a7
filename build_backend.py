"""The build backend: hatchling's, but a plain `pip install .` or `uv tool install .` of this
source tree stops at once, in one line naming the fix.

vcztools 0.2 requires ruranges-py on Python >= 3.12, whose only release is Rust source
(building it needs a Rust toolchain and crates.io). uv leaves it out with overrides.txt
(`--overrides`; in this checkout `[tool.uv]` does it for `uv sync` and `uv pip install .`).
pip cannot leave out a dependency of a dependency, and `uv tool install` ignores a project's
settings, so both would resolve ruranges-py and fail later in a Rust build. Both build this
project's metadata through this backend before resolving anything, so it says what to do
instead.

It refuses only when it can tell, from the frontend's command line and environment, that
nothing will leave ruranges-py out: pip resolving dependencies (pip sets PIP_BUILD_TRACKER;
`--no-deps` passes), or `uv tool install`/`uvx` with no overrides file, no UV_OVERRIDE and
no uv configuration file that could hold one. VCZREPO_BUILD_RURANGES=1 (a machine that can
build ruranges-py) always passes; `uv build`, `uv sync` and other frontends never see it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from hatchling import build as hatchling_build
from hatchling.build import *  # noqa: F403  every hook hatchling defines for this frontend, checked below

PIP_FIX = ("vczrepo: pip cannot leave out vcztools' Rust-only dependency ruranges-py; install with uv instead: "
           "pip install uv && python -m uv pip install --overrides overrides.txt . (see docs/install.md)")
UV_TOOL_FIX = ("vczrepo: uv tool installs ignore this project's settings, so pass the file leaving out vcztools' "
               "Rust-only dependency ruranges-py: uv tool install --overrides overrides.txt . (see docs/install.md)")
TRUE = ("1", "true", "yes", "on")


def refusal(environ: Mapping[str, str], frontend: Sequence[str], uv_configs: Sequence[Path] = ()) -> str | None:
    """The one-line refusal when the frontend (its command line `frontend`) would go on to build
    ruranges-py, else None; `uv_configs`: the user- and system-level uv.toml files that exist."""
    if environ.get("VCZREPO_BUILD_RURANGES") == "1":
        return None
    if "PIP_BUILD_TRACKER" in environ:
        no_deps = "--no-deps" in frontend or environ.get("PIP_NO_DEPS", "").lower() in TRUE
        return None if no_deps else PIP_FIX
    if _uv_tool(frontend):
        overridden = (any(a == "--overrides" or a.startswith("--overrides=") for a in frontend)
                      or any(a == "--config-file" or a.startswith("--config-file=") for a in frontend)
                      or "UV_OVERRIDE" in environ or "UV_CONFIG_FILE" in environ or bool(uv_configs))
        return None if overridden else UV_TOOL_FIX
    return None


def _uv_tool(argv: Sequence[str]) -> bool:
    """`uvx …`, `uv tool …` or `python -m uv tool …`."""
    names = [os.path.basename(a) for a in argv]
    if names[:1] == ["uvx"]:
        return True
    return any(name == "uv" and names[i + 1 : i + 2] == ["tool"] for i, name in enumerate(names))


def frontend_argv() -> list[str]:
    """The command line of the process that runs this build (pip's or uv's), where the OS shows it."""
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def uv_config_files(environ: Mapping[str, str]) -> list[Path]:
    """uv's user- and system-level configuration files that exist (`uv tool` reads them)."""
    user = Path(environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "uv" / "uv.toml"
    system = [Path(d) / "uv" / "uv.toml" for d in environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":") if d]
    return [p for p in (user, *system, Path("/etc/uv/uv.toml")) if p.is_file()]


def _check() -> None:
    message = refusal(os.environ, frontend_argv(), uv_config_files(os.environ))
    if message:
        raise SystemExit(message)


def _checked(hook: Callable) -> Callable:
    @functools.wraps(hook)
    def run(*args, **kwargs):
        _check()
        return hook(*args, **kwargs)

    return run


# Every wheel hook hatchling defines for this frontend is checked (which one a frontend calls
# first depends on it and its options: pip --no-build-isolation goes straight to the metadata);
# building an sdist installs nothing.
for _name in hatchling_build.__all__:
    if "sdist" not in _name:
        globals()[_name] = _checked(getattr(hatchling_build, _name))
