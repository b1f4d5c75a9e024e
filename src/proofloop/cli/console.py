"""Where the CLI writes, and what it lets through to a terminal or a pipe.

Model output is text from a server we do not control: escape sequences in it could clear
the screen, set the window title or plant hyperlinks. `safe` strips every control sequence
and control character but newline and tab before anything reaches stdout or stderr.

    >>> safe("ok\\x1b[2J\\x1b]0;pwned\\x07 \\x1b]8;;http://x\\x1b\\\\link\\x1b]8;;\\x1b\\\\ done\\r\\n")
    'ok link done\\n'
"""

from __future__ import annotations

import re
import sys

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), other two-byte escapes, 8-bit CSI/OSC,
# then any remaining C0/C1 control character except \t and \n.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|"
                      r"\x9b[0-?]*[ -/]*[@-~]|\x9d[^\x07\x1b]*(?:\x07|\x1b\\)?")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def safe(text: str) -> str:
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


def say(line: str = "") -> None:
    """One line of results on stdout."""
    print(safe(line), flush=True)


def note(line: str) -> None:
    """One line of progress or notice on stderr."""
    print(safe(line), file=sys.stderr, flush=True)
