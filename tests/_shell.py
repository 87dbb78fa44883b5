"""Child processes that receive Ctrl-C as a command started from a terminal does."""

from __future__ import annotations

#: Python source to run first in a child process that a test interrupts: SIGINT unblocked and
#: at Python's own handler, as an interactive shell starts a command. A child inherits its
#: parent's blocked and ignored signals, and a test process may hold SIGINT either way (a
#: library helper started earlier in the same worker can leave it so), which would make the
#: child deaf to the Ctrl-C the test sends.
AS_FROM_A_TERMINAL = (
    "import signal; signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT]); "
    "signal.signal(signal.SIGINT, signal.default_int_handler); ")
