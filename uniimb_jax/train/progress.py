"""The training progress bar: seed-epochs done of the budget, updated after every epoch.

A device call runs ``epochs_per_call`` epochs of every seed (minutes on a CPU), so a bar that
moved once per call looked hung. The compiled epoch loop calls :meth:`SeedEpochProgress.on_epoch`
after each epoch of each seed group (``jax.debug.callback`` in
:meth:`~uniimb_jax.train.engine.Engine.run_epochs_group`); after each call the loop resyncs the
bar from the gathered state (:meth:`SeedEpochProgress.sync`), which also covers the seeds of
other hosts. The bar counts seed-epochs, so its rate and ETA follow the work whether seeds run
side by side or one after another; a seed that stops early takes its unused epochs off the
total.

What it shows never goes backwards or jumps between seed groups: ``epoch`` is the epoch every
running seed has reached (the slowest one's: with seed groups run in turn, one group's epochs
would otherwise alternate with another's); ``best_val_loss`` is the mean over seeds of their
best validation loss, refreshed from the gathered state after each device call (when every
seed's value is current), not from whichever group ran last. The ETA is ours, not tqdm's:
measured from the end of the first epoch of this process (the first one includes
compilation, which made a resumed 30-second job start at an ETA of two hours) and shown only
once a second epoch has been timed.
"""

from __future__ import annotations

import threading
import time

import numpy as np

# tqdm's own remaining-time field is left out: ours is in the postfix (module docstring).
BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"


class SeedEpochProgress:
    """Progress of ``runs`` seeds with an epoch budget of ``epochs`` each.

    Args:
      seeds: the run's seed values (a copy padding a device's share repeats a seed; counted
        once).
      epochs: the epoch budget.
      desc: the bar's label.
    """

    def __init__(self, seeds, epochs: int, desc: str):
        self.seeds = [int(s) for s in seeds]
        self.epochs = int(epochs)
        self.desc = desc
        self.bar = None
        self._lock = threading.Lock()
        self._done = {s: 0 for s in self.seeds}  # epochs done per seed
        self._finished = {s: False for s in self.seeds}
        self._best = {s: float("nan") for s in self.seeds}
        self._clock = time.monotonic
        self._t0 = None  # (time, count) at the end of this process's first timed epoch

    def start(self, epochs_done, finished) -> None:
        """Opens the bar at the state of a (possibly resumed) run: ``epochs_done [runs]``,
        ``finished [runs] bool`` (stopped, or out of budget)."""
        from tqdm.auto import tqdm

        self._set(epochs_done, finished)
        self.bar = tqdm(total=self._total(), initial=self._count(), unit="seed-epoch",
                        desc=self.desc, dynamic_ncols=True, bar_format=BAR_FORMAT)
        self._t0 = None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    # ----------------------------------------------------------------- updates
    def on_epoch(self, seed, epoch, active, best_val_loss) -> None:
        """Host callback after one epoch of one seed group (numpy arrays ``[K]``)."""
        with self._lock:
            for s, e, a, b in zip(np.asarray(seed).reshape(-1), np.asarray(epoch).reshape(-1),
                                  np.asarray(active).reshape(-1),
                                  np.asarray(best_val_loss).reshape(-1)):
                s = int(s)
                if s not in self._done:
                    continue
                self._done[s] = max(self._done[s], int(e))
                # A seed that did not train this epoch has stopped (or is out of budget).
                self._finished[s] = self._finished[s] or not a or int(e) >= self.epochs
            self._refresh()

    def sync(self, epochs_done, finished, best_val_loss) -> None:
        """Exact state after a device call (every seed, from the gathered state)."""
        with self._lock:
            self._set(epochs_done, finished)
            for s, b in zip(self.seeds, np.asarray(best_val_loss).reshape(-1)):
                self._best[s] = float(b)
            self._refresh()

    # ----------------------------------------------------------------- helpers
    def _set(self, epochs_done, finished) -> None:
        for s, e, f in zip(self.seeds, np.asarray(epochs_done).reshape(-1),
                           np.asarray(finished).reshape(-1)):
            self._done[s] = int(e)
            self._finished[s] = bool(f)

    def _count(self) -> int:
        return sum(min(e, self.epochs) for e in self._done.values())

    def _total(self) -> int:
        return sum(min(self._done[s], self.epochs) if self._finished[s] else self.epochs
                   for s in self.seeds)

    def epoch_reached(self) -> int:
        """The epoch every running seed has reached (all seeds' when none runs)."""
        running = [e for s, e in self._done.items() if not self._finished[s]]
        return min(running) if running else max(self._done.values())

    def eta_seconds(self) -> float | None:
        """Remaining seconds at the rate measured since this process's first epoch ended,
        or None before a second epoch has been timed."""
        count = self._count()
        if self._t0 is None:
            return None
        t0, n0 = self._t0
        if count <= n0:
            return None
        rate = (count - n0) / max(self._clock() - t0, 1e-9)
        return (self._total() - count) / rate

    def _refresh(self) -> None:
        if self.bar is None:
            return
        count = self._count()
        if self._t0 is None and count > self.bar.n:
            self._t0 = (self._clock(), count)  # the compiling epoch ends here
        active = sum(not f for f in self._finished.values())
        best = [b for b in self._best.values() if np.isfinite(b)]
        eta = self.eta_seconds()
        self.bar.total = self._total()
        self.bar.set_postfix(
            epoch=f"{self.epoch_reached()}/{self.epochs}",
            active_seeds=active,
            best_val_loss=f"{np.mean(best):.4f}" if best else "-",
            eta="-" if eta is None else self.bar.format_interval(eta),
            refresh=False,
        )
        self.bar.update(count - self.bar.n)
