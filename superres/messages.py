"""What users read of an error."""

import argparse
import contextlib


class UsageError(Exception):
    """A problem with the command line, its files or a run folder; the CLIs print the
    message, which is meant for the user, as one line."""


def some(names, shown=3):
    """A few names of a list and how many more: 'a, b, c and 4 more'."""
    names = list(names)
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more"
                                       if len(names) > shown else "")


def first_line(error):
    """The first line of an exception's message (library errors run to pages), or its
    type's name when it has none."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, whose mistakes in a command line are one line (the error and where
    the usage is) instead of the whole usage before it."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def numbers_as_values(argv, flags):
    """``argv`` with a negative-looking number after one of ``flags`` joined to it
    (``--lr -1e-3`` -> ``--lr=-1e-3``): argparse takes ``-1e-3`` for a flag, and the
    setting's own check should be the one to refuse it."""
    joined, items = [], list(argv)
    while items:
        item = items.pop(0)
        if item in flags and items and items[0].startswith("-"):
            try:
                float(items[0].split(",")[0])
            except ValueError:
                pass
            else:
                item = f"{item}={items.pop(0)}"
        joined.append(item)
    return joined


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, systemd, job schedulers), raised where the program is, so it cleans up
    as after Ctrl-C; its exit code is 143."""


_sigterms = []   # the SIGTERMs this process received, kept apart from the exception


def stop_on_sigterm():
    """From now on SIGTERM raises Terminated in the main thread (called from the main
    thread only: a CLI's main, not a server's worker)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        _sigterms.append(signum)
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)


def raise_if_terminated():
    """Raise Terminated if a SIGTERM came: for the points between steps of long work, where a
    Terminated that C code swallowed (printed, not raised) is raised again."""
    if _sigterms:
        raise Terminated()


@contextlib.contextmanager
def terminated_intact():
    """Inside it, any error raised after a SIGTERM comes out as Terminated: a Terminated
    raised while TensorFlow's C code runs can come back as SystemError or TypeError, or be
    printed and lost; work that ends normally after a SIGTERM ends as Terminated too."""
    try:
        yield
    except Exception as error:
        if _sigterms:
            raise Terminated() from error
        raise
    raise_if_terminated()


def interrupted(error, what):
    """The one line and exit code for Ctrl-C (130) or SIGTERM (143)."""
    import sys

    name, code = ("terminated (SIGTERM)", 143) if isinstance(error, Terminated) \
        else ("interrupted", 130)
    print(f"\n{name}; {what}", file=sys.stderr)
    return code
