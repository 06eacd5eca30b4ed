"""A one-line progress display for long runs, silent when stdout is not a terminal, and the
one notice a run stopped by a signal writes to stderr (the process is about to exit, often
in a batch job's log, and the notice says how to resume).

The line shows the time the generation has taken and an estimate of the time left
(:func:`estimate_remaining`); the dashboard and ``dabc info`` compute the same estimate from
the master's live row, so the two agree.
"""

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


def estimate_remaining(accepted: int, needed: int, elapsed: float) -> float | None:
    """Seconds until a generation has ``needed`` accepted particles, at the rate so far.

    Acceptances arrive at a roughly constant rate within a generation (the threshold is
    fixed), so the time left is ``(needed - accepted) * elapsed / accepted``.

    Parameters
    ----------
    accepted : int
        Particles accepted so far.
    needed : int
        Particles the generation needs.
    elapsed : float
        Seconds since the generation started.

    Returns
    -------
    float or None
        The estimate (0.0 once ``accepted >= needed``); None while nothing is accepted yet
        or no time has passed (no rate to go by).

    Examples
    --------
    >>> estimate_remaining(250, 1000, 10.0)
    30.0
    >>> estimate_remaining(0, 1000, 10.0) is None
    True
    """
    if accepted >= needed:
        return 0.0
    if accepted <= 0 or not elapsed > 0:
        return None
    return (needed - accepted) * float(elapsed) / accepted


def format_duration(seconds: float | None) -> str:
    """A duration for people: ``"42 s"``, ``"3 min 05 s"``, ``"2 h 10 min"``; ``"?"`` for None.

    Parameters
    ----------
    seconds : float or None
        The duration.

    Returns
    -------
    str
        The text.

    Examples
    --------
    >>> format_duration(185.2)
    '3 min 05 s'
    """
    if seconds is None:
        return "?"
    s = int(round(max(float(seconds), 0.0)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


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
        self._t0 = time.monotonic()
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
        self._t0 = time.monotonic()

    def __call__(self, accepted: int, needed: int, evaluations: int,
                 worker_seconds: float | None = None) -> None:
        """Show the generation's progress (at most every 0.1 s; the sampler's callback).

        Parameters
        ----------
        accepted, needed, evaluations : int
            Accepted particles so far, particles needed, evaluations received.
        worker_seconds : float, optional
            Seconds the workers spent on them (shows how many were busy on average).
        """
        now = time.monotonic()
        if not self.enabled or now - self._last < 0.1:
            return
        self._last = now
        self._write(self.text(accepted, needed, evaluations, worker_seconds, now - self._t0))

    def text(self, accepted: int, needed: int, evaluations: int,
             worker_seconds: float | None, elapsed: float) -> str:
        """The progress line for these numbers (what :meth:`__call__` writes).

        Parameters
        ----------
        accepted, needed, evaluations : int
            As for :meth:`__call__`.
        worker_seconds : float or None
            As for :meth:`__call__`.
        elapsed : float
            Seconds since the generation started.

        Returns
        -------
        str
            E.g. ``"generation 3 | accepted 250/1000 | evaluations 2,000 | epsilon 0.5 |
            acceptance rate 0.125 | 10 s elapsed, about 30 s left | workers busy 3.9"``.
        """
        rate = accepted / evaluations if evaluations else 0.0
        left = estimate_remaining(accepted, needed, elapsed)
        line = (f"generation {self.t} | accepted {accepted}/{needed} | evaluations "
                f"{evaluations:,} | epsilon {self.epsilon:.4g} | acceptance rate {rate:.3f} | "
                f"{format_duration(elapsed)} elapsed, about {format_duration(left)} left")
        if worker_seconds is not None and elapsed > 0:
            line += f" | workers busy {worker_seconds / elapsed:.1f}"
        return line

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
