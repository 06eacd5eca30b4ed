"""A one-line progress display for long runs, silent when stdout is not a terminal, and the
one notice a run stopped by a signal writes to stderr (the process is about to exit, often
in a batch job's log, and the notice says how to resume)."""

from __future__ import annotations

import sys
import time


def notice(text: str, stream=None) -> None:
    """Write one line to stderr (a stopped run's how-to-resume message).

    Parameters
    ----------
    text : str
        The line, without a newline.
    stream : file-like, optional
        Where to write; default :data:`sys.stderr`.
    """
    stream = stream or sys.stderr
    try:
        stream.write(text + "\n")
        stream.flush()
    except (OSError, ValueError):  # a closed or broken stream: the log has it anyway
        pass


class ProgressLine:
    """Rewrites one terminal line with the generation's progress, at most 10 times a second.

    The only output the library writes itself (everything else goes to the ``dabc`` loggers).

    Parameters
    ----------
    enabled : bool, optional
        Whether to write at all. Default: only when ``stream`` is a terminal.
    stream : file-like, optional
        Where to write. Default: :data:`sys.stdout`.
    """

    def __init__(self, enabled: bool | None = None, stream=None):
        self.stream = stream or sys.stdout
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._last = 0.0
        self.t, self.epsilon, self.label = 0, float("inf"), ""

    def start(self, t: int, epsilon: float) -> None:
        """Begin generation ``t`` with threshold ``epsilon`` (shown on the line).

        Parameters
        ----------
        t : int
            The generation.
        epsilon : float
            Its acceptance threshold.
        """
        self.t, self.epsilon = t, epsilon

    def __call__(self, accepted: int, needed: int, evaluations: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last < 0.1:
            return
        self._last = now
        rate = accepted / evaluations if evaluations else 0.0
        self._write(f"generation {self.t} | accepted {accepted}/{needed} | evaluations "
                    f"{evaluations:,} | epsilon {self.epsilon:.4g} | acceptance rate {rate:.3f}")

    def finish(self, text: str) -> None:
        """Replace the live line with a permanent summary line.

        Parameters
        ----------
        text : str
            The summary, without a newline.
        """
        if self.enabled:
            self._write(text)
            self.stream.write("\n")
            self.stream.flush()

    def _write(self, text: str) -> None:
        self.stream.write("\r\033[K" + text)
        self.stream.flush()
