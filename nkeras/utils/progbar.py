"""``Progbar``: Keras 3's console progress bar, and ``print_msg``."""

import math
import os
import sys
import time

_BOLD = "\x1b[1m"
_GREEN = "\33[32m"
_GREY = "\33[37m"
_RESET = "\x1b[0m"
_BAR_CHAR = "━"


def print_msg(message, line_break=True):
    """Write ``message`` to ``sys.stdout`` and flush, as Keras does.

    Characters the stream cannot encode are replaced (the bar falls back to
    ``=``), so a redirected or ASCII-only stdout still works.
    """
    message = f"{message}\n" if line_break else str(message)
    stream = sys.stdout
    try:
        stream.write(message)
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "utf-8"
        message = message.replace(_BAR_CHAR, "=").encode(encoding, errors="ignore").decode(encoding)
        stream.write(message)
    stream.flush()


def _has_dynamic_display():
    """Keras's rule for redrawing the bar in place with ``\\r``."""
    return (
        (hasattr(sys.stdout, "isatty") and sys.stdout.isatty())
        or "ipykernel" in sys.modules
        or "posix" in sys.modules
        or "PYCHARM_HOSTED" in os.environ
    )


def _format_value(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return f" {value}"
    return f" {value:.4f}" if abs(value) > 1e-3 else f" {value:.4e}"


def _format_eta(seconds):
    if seconds > 3600:
        return "%d:%02d:%02d" % (seconds // 3600, (seconds % 3600) // 60, seconds % 60)
    if seconds > 60:
        return "%d:%02d" % (seconds // 60, seconds % 60)
    return "%ds" % seconds


def _format_time_per_unit(time_per_unit, unit_name):
    if time_per_unit >= 1 or time_per_unit == 0:
        return f" {time_per_unit:.0f}s/{unit_name}"
    if time_per_unit >= 1e-3:
        return f" {time_per_unit * 1e3:.0f}ms/{unit_name}"
    return f" {time_per_unit * 1e6:.0f}us/{unit_name}"


class Progbar:
    """Displays a progress bar.

    Args:
        target: Total number of steps expected, ``None`` if unknown.
        width: Progress bar width on screen, in characters.
        verbose: 0 (silent), 1 (a live bar redrawn in place) or 2 (one line
            when the bar is finalized).
        interval: Minimum time in seconds between two redraws of the live bar.
        stateful_metrics: Names of metrics shown as given; every other metric
            is averaged over the steps. Do not pass with ``stateless_metrics``.
        stateless_metrics: Names of metrics averaged over the steps; every
            other metric is shown as given. Do not pass with
            ``stateful_metrics``.
        unit_name: Display name of a step ("step", "sample").

    With neither ``stateful_metrics`` nor ``stateless_metrics``, every metric
    is averaged.
    """

    def __init__(
        self,
        target,
        width=20,
        verbose=1,
        interval=0.05,
        stateful_metrics=None,
        stateless_metrics=None,
        unit_name="step",
    ):
        if stateful_metrics is not None and stateless_metrics is not None:
            raise ValueError(
                "Progbar: pass only one of `stateful_metrics` (names shown as given, the rest averaged) "
                "and `stateless_metrics` (names averaged, the rest shown as given)"
            )
        if verbose not in (0, 1, 2):
            raise ValueError(f"Progbar: verbose must be 0, 1 or 2, got {verbose!r}")
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.unit_name = unit_name
        if stateless_metrics is not None:
            self.stateful_metrics = None
            self.stateless_metrics = set(stateless_metrics)
        else:
            self.stateful_metrics = set(stateful_metrics or ())
            self.stateless_metrics = None
        self._dynamic_display = _has_dynamic_display()
        self._seen_so_far = 0
        self._values = {}
        self._start = time.time()
        self._last_update = 0.0
        self._time_after_first_step = None
        self._prev_total_width = 0

    def _is_stateless(self, name):
        if self.stateful_metrics is not None:
            return name not in self.stateful_metrics
        return name in self.stateless_metrics

    def _redraw_due(self):
        """Whether the live bar would be redrawn by a non-final update now."""
        return self.verbose == 1 and time.time() - self._last_update >= self.interval

    def update(self, current, values=None, finalize=None):
        """Updates the progress bar.

        Args:
            current: Index of the current step (number of steps done).
            values: List of ``(name, value_for_last_step)`` pairs. Metrics in
                ``stateful_metrics`` are shown as given, the others averaged.
            finalize: Whether this is the last update; ``None`` means
                ``current >= target``.
        """
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        for name, value in values or ():
            if self._is_stateless(name) and not finalize:
                steps = max(current - self._seen_so_far, 1)
                total = self._values.get(name)
                if total is None:
                    self._values[name] = [value * steps, steps]
                else:
                    total[0] += value * steps
                    total[1] += steps
            else:
                self._values[name] = [value, 1]
        self._seen_so_far = current

        now = time.time()
        time_per_unit = self._estimate_step_duration(current, now)
        if self.verbose == 1:
            if now - self._last_update < self.interval and not finalize:
                return
            self._draw_live(current, now, time_per_unit, finalize)
        elif self.verbose == 2 and finalize and self.target is not None and self.target > 0:
            digits = int(math.log10(self.target)) + 1
            line = f"%{digits}d/%d - {now - self._start:.0f}s -" % (current, self.target)
            line += _format_time_per_unit(time_per_unit, self.unit_name)
            print_msg(line + self._metrics_text(), line_break=True)
        self._last_update = now

    def _metrics_text(self):
        text = ""
        for name, (total, count) in self._values.items():
            try:
                average = float(total) / max(1, count)
            except (TypeError, ValueError):
                average = total
            text += f" - {name}:" + _format_value(average)
        return text

    def _draw_live(self, current, now, time_per_unit, finalize):
        message = ("\b" * self._prev_total_width + "\r") if self._dynamic_display else "\n"
        invisible = 0
        if self.target is not None and self.target > 0:
            digits = int(math.log10(self.target)) + 1
            bar = f"{_BOLD}%{digits}d/%d{_RESET} " % (current, self.target)
            invisible += len(_BOLD) + len(_RESET)
            done_width = min(int(self.width * current / self.target), self.width)
            if done_width > 0:
                bar += f"{_GREEN}{_BAR_CHAR * done_width}{_RESET}"
                invisible += len(_GREEN) + len(_RESET)
            bar += f"{_GREY}{_BAR_CHAR * (self.width - done_width)}{_RESET}"
            invisible += len(_GREY) + len(_RESET)
            show_eta = not finalize
        else:
            bar = "%7d/Unknown" % current
            show_eta = False
        if show_eta:
            clock = _format_eta(time_per_unit * (self.target - current))
        else:
            clock = f"{now - self._start:.0f}s"
        info = f" {_BOLD}{clock}{_RESET}"
        invisible += len(_BOLD) + len(_RESET)
        info += _format_time_per_unit(time_per_unit, self.unit_name) + self._metrics_text()
        total_width = len(bar) + len(info) - invisible
        if self._prev_total_width > total_width:
            info += " " * (self._prev_total_width - total_width)
        if finalize:
            info += "\n"
        print_msg(message + bar + info, line_break=False)
        self._prev_total_width = total_width

    def add(self, n, values=None):
        """Advance the bar by ``n`` steps."""
        self.update(self._seen_so_far + n, values)

    def _estimate_step_duration(self, current, now):
        """Seconds per step, leaving out the (often slow) first step once
        later steps are known."""
        if not current:
            return 0
        if self._time_after_first_step is not None and current > 1:
            time_per_unit = (now - self._time_after_first_step) / (current - 1)
        else:
            time_per_unit = (now - self._start) / current
        if current == 1:
            self._time_after_first_step = now
        return time_per_unit
