"""`python -m infra.wayland_protocols`: generate the collector's Wayland protocol bindings from the protocol files
it ships (collector/wayland/protocols/*.xml) with pywayland's scanner.

pywayland bundles the core protocol and wayland-protocols (ext-idle-notify among them), not wlroots' foreign
toplevel management or KDE's older idle protocol, which a wlroots compositor of Debian 12 (sway 1.7) offers
instead of ext-idle-notify. The generated modules import the core interfaces from pywayland's own bundle, so
the collector carries only these two. tests/unit/test_wayland_protocols.py regenerates them and compares.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

PROTOCOLS = Path(__file__).resolve().parents[1] / "collector" / "wayland" / "protocols"
# The core protocol the shipped ones refer to (wl_seat, wl_output, wl_surface): libwayland-dev's copy.
CORE_XML = Path("/usr/share/wayland/wayland.xml")


def generate(out_dir: Path) -> list[Path]:
    """The bindings of every shipped protocol file, written to `out_dir`; returns the modules written."""
    shipped = sorted(PROTOCOLS.glob("*.xml"))
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [sys.executable, "-m", "pywayland.scanner", "-i", str(CORE_XML), *map(str, shipped), "-o", scratch],
            check=True,
            capture_output=True,
        )
        written = []
        for module in sorted(Path(scratch).glob("*.py")):
            if module.stem == "wayland":
                continue  # pywayland.protocol.wayland is used instead
            text = re.sub(
                r"^from \.wayland import ", "from pywayland.protocol.wayland import ", module.read_text(), flags=re.M
            )
            target = out_dir / module.name
            target.write_text(text)
            written.append(target)
        return written


def main() -> int:
    for module in generate(PROTOCOLS):
        print(f"wrote {module.relative_to(PROTOCOLS.parents[2])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
